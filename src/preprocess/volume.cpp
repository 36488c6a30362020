#include "hemoscan/preprocess/volume.hpp"

#include <algorithm>
#include <opencv2/core.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/util/parallel.hpp"

namespace hemoscan {

std::vector<Sample> preprocess_volume(const Volume& volume, const PreprocessOptions& options, int threads) {
    const size_t n = volume.slices.size();
    if (volume.slice_meta.size() != n) {
        throw UsageError("preprocess_volume: " + std::to_string(n) + " slices but " +
                         std::to_string(volume.slice_meta.size()) + " slice metadata entries");
    }
    std::vector<DicomSlice> slices;
    slices.reserve(n);
    for (size_t i = 0; i < n; ++i) slices.push_back(DicomSlice{volume.slices[i], volume.slice_meta[i]});
    return preprocess_slices(slices, options, threads);
}

std::vector<Sample> preprocess_slices(const std::vector<DicomSlice>& slices, const PreprocessOptions& options,
                                      int threads) {
    std::vector<Sample> out(slices.size());
    // Each slice lands at its index, so the output does not depend on which thread made it.
    parallel_for_index(slices.size(), threads, [&](size_t i) { out[i] = preprocess(slices[i], options); });
    return out;
}

std::vector<Sample> stack_slice_context(const std::vector<Sample>& slices, int context) {
    std::vector<Sample> out = slices;
    if (context <= 0) return out;
    const int n = static_cast<int>(slices.size());
    for (int k = 0; k < n; ++k) {
        const cv::Mat& centre = slices[static_cast<size_t>(k)].image;
        std::vector<cv::Mat> parts;
        for (int d = -context; d <= context; ++d) {
            const Sample& s = slices[static_cast<size_t>(std::clamp(k + d, 0, n - 1))];
            if (s.image.size() != centre.size() || s.image.type() != centre.type()) {
                throw InputError(s.meta.path + ": slice context: its preprocessed size differs from its neighbour's (" +
                                 slices[static_cast<size_t>(k)].meta.path + ")");
            }
            parts.push_back(s.image);
        }
        cv::merge(parts, out[static_cast<size_t>(k)].image);
    }
    return out;
}

}  // namespace hemoscan

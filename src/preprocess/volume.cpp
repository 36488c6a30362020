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

std::vector<size_t> context_indices(size_t n, size_t k, int context) {
    std::vector<size_t> out;
    if (n == 0) return out;
    for (long d = -context; d <= context; ++d) {
        out.push_back(static_cast<size_t>(std::clamp(static_cast<long>(k) + d, 0L, static_cast<long>(n) - 1)));
    }
    return out;
}

std::vector<Sample> stack_slice_context(const std::vector<Sample>& slices, int context) {
    std::vector<Sample> out = slices;
    if (context <= 0) return out;
    for (size_t k = 0; k < slices.size(); ++k) {
        const cv::Mat& centre = slices[k].image;
        std::vector<cv::Mat> parts;
        for (size_t i : context_indices(slices.size(), k, context)) {
            const Sample& s = slices[i];
            if (s.image.size() != centre.size() || s.image.type() != centre.type()) {
                throw InputError(s.meta.path + ": slice context: its preprocessed size differs from its neighbour's (" +
                                 slices[k].meta.path + ")");
            }
            parts.push_back(s.image);
        }
        cv::merge(parts, out[k].image);
    }
    return out;
}

}  // namespace hemoscan

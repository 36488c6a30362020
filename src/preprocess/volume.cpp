#include "hemoscan/preprocess/volume.hpp"

#include "hemoscan/error.hpp"
#include "hemoscan/util/parallel.hpp"

namespace hemoscan {

std::vector<Sample> preprocess_volume(const Volume& volume, const PreprocessOptions& options, int threads) {
    const size_t n = volume.slices.size();
    if (volume.slice_meta.size() != n) {
        throw UsageError("preprocess_volume: " + std::to_string(n) + " slices but " +
                         std::to_string(volume.slice_meta.size()) + " slice metadata entries");
    }
    std::vector<Sample> out(n);
    // Each slice lands at its index, so the output does not depend on which thread made it.
    parallel_for_index(n, threads, [&](size_t i) {
        out[i] = preprocess(DicomSlice{volume.slices[i], volume.slice_meta[i]}, options);
    });
    return out;
}

}  // namespace hemoscan

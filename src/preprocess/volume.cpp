#include "hemoscan/preprocess/volume.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

#include "hemoscan/error.hpp"

namespace hemoscan {

std::vector<Sample> preprocess_volume(const Volume& volume, const PreprocessOptions& options, int threads) {
    const size_t n = volume.slices.size();
    if (volume.slice_meta.size() != n) {
        throw UsageError("preprocess_volume: " + std::to_string(n) + " slices but " +
                         std::to_string(volume.slice_meta.size()) + " slice metadata entries");
    }
    std::vector<Sample> out(n);
    std::vector<std::exception_ptr> errors(n);
    std::atomic<size_t> next{0};
    // Each slice lands at its index, so the output does not depend on which thread made it.
    auto work = [&] {
        for (size_t i = next++; i < n; i = next++) {
            try {
                out[i] = preprocess(DicomSlice{volume.slices[i], volume.slice_meta[i]}, options);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
    };
    const size_t cores = std::max(1u, std::thread::hardware_concurrency());
    const size_t workers = std::min(n, threads > 0 ? static_cast<size_t>(threads) : cores);
    std::vector<std::thread> pool;
    for (size_t t = 1; t < workers; ++t) pool.emplace_back(work);
    work();  // the calling thread is one of the workers
    for (auto& t : pool) t.join();
    for (const auto& e : errors) {
        if (e) std::rethrow_exception(e);
    }
    return out;
}

}  // namespace hemoscan

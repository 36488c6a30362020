// Reader size limits (io/limits.hpp).
#include "hemoscan/io/limits.hpp"

#include <mutex>

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {

std::mutex& limits_mutex() {
    static std::mutex m;
    return m;
}

ReadLimits& current() {
    static ReadLimits limits;
    return limits;
}

}  // namespace

ReadLimits read_limits() {
    std::lock_guard<std::mutex> lock(limits_mutex());
    return current();
}

void set_read_limits(const ReadLimits& limits) {
    if (limits.max_pixels_per_slice < 1 || limits.max_slices < 1 || limits.max_voxels < 1) {
        throw UsageError("read limits must be positive");
    }
    std::lock_guard<std::mutex> lock(limits_mutex());
    current() = limits;
}

void check_slice_pixels(const std::string& name, std::int64_t rows, std::int64_t cols, const std::string& what) {
    const std::int64_t limit = read_limits().max_pixels_per_slice;
    // Divide rather than multiply: a crafted header can claim sizes whose product overflows.
    if (rows < 1 || cols < 1 || rows > limit / cols) {
        throw InputError(name + ": " + what + " is " + std::to_string(cols) + " x " + std::to_string(rows) +
                         " pixels, over the limit of " + std::to_string(limit) + " pixels per slice");
    }
}

}  // namespace hemoscan

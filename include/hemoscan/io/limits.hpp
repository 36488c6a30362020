#pragma once
// Size limits that the readers check before they allocate (issue 28): a file that claims more than
// they allow is refused with an InputError naming the file, the size it claims and the limit, instead
// of a multi-gigabyte allocation (or std::bad_alloc without a name). Process-wide: the tools set them
// once at start-up (set_read_limits); the defaults cover real CT and MR.
#include <cstdint>
#include <string>

namespace hemoscan {

struct ReadLimits {
    std::int64_t max_pixels_per_slice = 4096LL * 4096;  // rows x columns of one 2D image or slice
    std::int64_t max_slices = 2000;                     // slices of one series or volume
    std::int64_t max_voxels = 512LL * 512 * 2048;       // voxels read for one input (all its series)
};

ReadLimits read_limits();
// UsageError for non-positive values.
void set_read_limits(const ReadLimits& limits);

// InputError "<name>: <what> is R x C pixels, over the limit of N per slice" when rows x cols is
// above the limit (or either is not positive).
void check_slice_pixels(const std::string& name, std::int64_t rows, std::int64_t cols, const std::string& what);

}  // namespace hemoscan

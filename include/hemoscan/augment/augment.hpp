#pragma once
// On-the-fly, seeded augmentation. One random draw per sample is applied to the image and its mask
// together: the same affine warp (linear for the image, nearest neighbour for the mask).
#include <cstdint>
#include <string>

#include "hemoscan/image.hpp"

namespace hemoscan {

struct AugmentOptions {
    bool enabled = true;
    double p_hflip = 0.5;          // left-right flip probability
    double p_vflip = 0.0;          // up-down flip probability (off: heads are not upside down)
    double rotate_deg = 15;        // uniform in [-r, r]
    double shear_deg = 5;          // uniform in [-s, s] (x shear)
    double zoom = 0.10;            // scale uniform in [1 - z, 1 + z]
    double translate = 0.08;       // fraction of the size, uniform in [-t, t] for x and y
    double intensity_scale = 0.10; // multiply by uniform [1 - s, 1 + s]
    double contrast = 0.10;        // (x - mean) * uniform [1 - c, 1 + c] + mean
    double gamma = 0.15;           // x^g with g = exp(uniform [-log(1+g), log(1+g)]) on 0..1 data
    double noise_std = 0.02;       // Gaussian noise sigma (image units), drawn once per sample from [0, s]
    float fill_value = 0.f;        // image value for pixels warped in from outside
};

// The concrete draw for one sample (exposed for tests and for reproducing one augmentation).
struct AugmentDraw {
    bool hflip = false, vflip = false;
    double angle_deg = 0, shear_deg = 0, scale = 1, tx = 0, ty = 0;  // tx, ty in pixels
    double intensity = 1, contrast = 1, gamma = 1, noise_std = 0;
    std::uint64_t noise_seed = 0;
};

// Draws the random parameters for a sample of size `size` from a seed (deterministic).
AugmentDraw draw_augment(const AugmentOptions& options, cv::Size size, std::uint64_t seed);

// Applies a draw to a sample in place: spatial to image and mask, intensity to the image only.
void apply_augment(Sample& sample, const AugmentDraw& draw, const AugmentOptions& options);

// The 2x3 affine matrix (output -> source not inverted: maps source to destination) of a draw.
cv::Mat augment_matrix(const AugmentDraw& draw, cv::Size size);

// Convenience: draw with seed, then apply. Seeds for the loader are mixed from (seed, epoch, index)
// so the result does not depend on thread scheduling.
void augment(Sample& sample, const AugmentOptions& options, std::uint64_t seed);
std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t epoch, std::uint64_t index);

// Parses "on"/"off" (and true/false/1/0) into enabled; throws UsageError otherwise.
bool parse_on_off(const std::string& value, const std::string& field);

}  // namespace hemoscan

#pragma once
// Lesion insertion: a training augmentation for classification that paints a small, soft-edged,
// hyperdense ellipse (an acute parenchymal haematoma as it looks in the brain window) into the brain
// of a preprocessed image, so that the model sees many more small focal bleeds than a small data set
// holds. Works on unit-range images (0 = air/black, 1 = white), after preprocessing and before the
// spatial augmentation (which then moves the lesion with the image).
#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>

namespace hemoscan {

struct LesionInsertOptions {
    double probability = 0;           // per training sample; 0 = off
    std::vector<float> channel_gain;  // contrast per channel relative to the brain window (80 / window width);
                                      // empty = 1 for every channel
    double min_radius = 0.012;        // ellipse semi-axis, fraction of the image width
    double max_radius = 0.05;
    double min_contrast = 0.30;       // added brightness in brain-window units (blood 25-50 HU over brain / 80 HU)
    double max_contrast = 0.55;
};

// Where a lesion may go: inside the head, away from the skull (the head eroded by a tenth of the
// image size) and on parenchyma-like values of the first channel (0.25 .. 0.70: not CSF, not bone).
// CV_8UC1, 255 = allowed.
cv::Mat lesion_candidates(const cv::Mat& image);

// With `options.probability` (drawn from `seed`), paints one lesion at a random candidate pixel of
// `image` (CV_32FC(C), changed in place; values clipped at 1). Returns true when a lesion was painted:
// false when the draw said no or the image has no candidate pixel (e.g. not a head). Deterministic in
// the seed.
bool insert_lesion(cv::Mat& image, const LesionInsertOptions& options, std::uint64_t seed);

}  // namespace hemoscan

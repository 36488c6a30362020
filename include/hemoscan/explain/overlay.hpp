#pragma once
// Heat-map overlay of a Grad-CAM map on the image it explains.
#include <opencv2/core.hpp>

namespace hemoscan {

// Blends the JET colour map of `cam` (CV_32FC1 in [0, 1], any size: resized bilinearly to the image;
// values outside [0, 1] are clamped) onto `image` (CV_8UC1 grey or CV_8UC3 BGR):
//   out = (1 - alpha * cam) * image + alpha * cam * jet(cam)
// per pixel, so a zero cam leaves the image unchanged and hot regions get up to `alpha` colour.
// Returns CV_8UC3 BGR of the image's size. Empty/mistyped inputs or alpha outside [0, 1] -> UsageError.
cv::Mat overlay_heatmap(const cv::Mat& image, const cv::Mat& cam, double alpha = 0.4);

}  // namespace hemoscan

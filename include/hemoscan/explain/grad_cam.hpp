#pragma once
// Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for one output lies.
// Includes LibTorch (through models/classifier.hpp); explain/overlay.hpp does not.
#include <opencv2/core.hpp>

#include "hemoscan/models/classifier.hpp"

namespace hemoscan {

// Class activation map of output `output_index` (logit) for a 1 x C x H x W input:
// ReLU(sum_k w_k A_k) with A = model.features(input) and w_k = spatial mean of d logit / d A_k,
// upsampled (bilinear) to H x W and divided by its maximum. Returns CV_32FC1 H x W in [0, 1]; all
// zeros when no location has positive evidence.
// Runs in whatever mode the model is in (call model.eval() first for a deterministic map); enables
// autograd locally (works under a caller's NoGradGuard, not under c10::InferenceMode) and leaves
// no gradient on the parameters. Bad input shape or output index -> UsageError.
cv::Mat grad_cam(ClassifierImpl& model, const torch::Tensor& input, int output_index);

// The last step of grad_cam(), for callers that computed the class activation map themselves (e.g.
// for a whole batch): an h x w float CAM (>= 0) upsampled (bilinear) to height x width and divided by
// its maximum -> CV_32FC1 in [0, 1], all zeros when the CAM has no positive value.
cv::Mat cam_to_map(const torch::Tensor& cam, int height, int width);

}  // namespace hemoscan

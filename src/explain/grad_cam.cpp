#include "hemoscan/explain/grad_cam.hpp"

#include <sstream>

#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"

namespace hemoscan {

cv::Mat grad_cam(ClassifierImpl& model, const torch::Tensor& input, int output_index) {
    if (!input.defined() || input.dim() != 4 || input.size(0) != 1) {
        std::ostringstream ss;
        ss << "grad_cam: expected a 1 x C x H x W input, got ";
        if (input.defined())
            ss << "shape " << input.sizes();
        else
            ss << "an undefined tensor";
        throw UsageError(ss.str());
    }
    const int num_outputs = model.config().num_outputs;
    if (output_index < 0 || output_index >= num_outputs)
        throw UsageError("grad_cam: output index " + std::to_string(output_index) + " out of range (model has " +
                         std::to_string(num_outputs) + " outputs)");
    if (c10::InferenceMode::is_enabled())
        throw UsageError("grad_cam: needs autograd, cannot run under c10::InferenceMode");

    const auto height = static_cast<int>(input.size(2)), width = static_cast<int>(input.size(3));
    torch::Tensor features;
    {
        // Only the head needs a graph; differentiating w.r.t. a detached copy of the features
        // (torch::autograd::grad, not backward()) leaves the parameters' .grad untouched.
        torch::NoGradGuard no_grad;
        features = model.features(input);
    }
    torch::Tensor cam;
    {
        torch::AutoGradMode enable_grad(true);
        features = features.detach().requires_grad_(true);
        const torch::Tensor logit = model.head(features).select(1, output_index).sum();
        const torch::Tensor grad = torch::autograd::grad({logit}, {features})[0];
        torch::NoGradGuard no_grad;
        const torch::Tensor weights = grad.mean({2, 3}, /*keepdim=*/true);  // 1 x K x 1 x 1
        cam = torch::relu((weights * features).sum(1)).squeeze(0).to(torch::kCPU, torch::kFloat32).contiguous();
    }
    return cam_to_map(cam, height, width);
}

cv::Mat cam_to_map(const torch::Tensor& cam_in, int height, int width) {
    if (!cam_in.defined() || cam_in.dim() != 2) throw UsageError("cam_to_map: expected an h x w map");
    const torch::Tensor cam = cam_in.to(torch::kCPU, torch::kFloat32).contiguous();
    cv::Mat small(static_cast<int>(cam.size(0)), static_cast<int>(cam.size(1)), CV_32FC1, cam.data_ptr<float>());
    cv::Mat map;
    cv::resize(small, map, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);  // copies out of the tensor
    double max_value = 0;
    cv::minMaxLoc(map, nullptr, &max_value);
    if (max_value > 0)
        map /= max_value;
    else
        map.setTo(0);
    cv::min(cv::max(map, 0.0), 1.0, map);
    return map;
}

}  // namespace hemoscan

#pragma once
// VGG-19 (Simonyan & Zisserman, configuration "E"), plain or with BatchNorm, with torchvision's module
// structure and parameter names: `features.N` (torchvision's Sequential indices: ReLU, BatchNorm and
// MaxPool take indices too), `avgpool` (adaptive, 7x7) and `classifier.0/.3/.6` (Linear, with ReLU and
// Dropout between), so that a torchvision state dict maps onto it one to one. classifier.6 is our head
// (one output per label or class); the Dropout before it (classifier.5) has ModelConfig::dropout, the one
// after classifier.0 torchvision's 0.5. The 7x7 map is flattened, as torchvision does: ModelConfig::pool
// must be "avg". Widths are torchvision's (ModelConfig::width must be 1).
#include "hemoscan/models/classifier.hpp"

#include <string>
#include <vector>

namespace hemoscan {

class VggImpl : public ClassifierImpl {
public:
    // batch_norm: vgg19_bn (conv, BatchNorm, ReLU) instead of vgg19 (conv, ReLU). config.dropout must be set.
    VggImpl(ModelConfig config, bool batch_norm);

    // The last conv block's activation before its MaxPool (a finer map for Grad-CAM): N x 512 x H/16 x W/16.
    torch::Tensor features(const torch::Tensor& x) override;
    // The last MaxPool, avgpool to 7x7, flatten, classifier.
    torch::Tensor head(const torch::Tensor& features) override;
    std::vector<std::string> head_modules() const override { return {"classifier"}; }

private:
    torch::nn::Sequential features_{nullptr};
    torch::nn::MaxPool2d last_pool_{nullptr};  // also the last module of features_
    torch::nn::AdaptiveAvgPool2d avgpool_{nullptr};
    torch::nn::Sequential classifier_{nullptr};
};
TORCH_MODULE(Vgg);

}  // namespace hemoscan

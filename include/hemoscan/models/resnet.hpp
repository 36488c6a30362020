#pragma once
// ResNet-18/34/50 (He et al.) with torchvision's module structure and parameter names (conv1, bn1,
// layer1..layer4 of BasicBlock/Bottleneck with downsample.0/.1, fc), so that a torchvision state
// dict maps onto it one to one. Bottleneck blocks stride in their 3x3 convolution (torchvision's
// "ResNet v1.5"). The head is ours: global pooling (ModelConfig::pool), dropout, and `fc` with one
// output per label or class. Widths are torchvision's (ModelConfig::width must be 1).
#include "hemoscan/models/classifier.hpp"

#include <vector>

namespace hemoscan {

class ResNetImpl : public ClassifierImpl {
public:
    // layers: blocks per stage ({2,2,2,2} resnet18, {3,4,6,3} resnet34 and resnet50); bottleneck:
    // Bottleneck blocks (resnet50) instead of BasicBlock. config.dropout must be set.
    ResNetImpl(ModelConfig config, std::vector<int> layers, bool bottleneck);

    // layer4's activation: N x 512 (x4 for bottleneck) x H/32 x W/32.
    torch::Tensor features(const torch::Tensor& x) override;
    torch::Tensor head(const torch::Tensor& features) override;
    std::vector<std::string> head_modules() const override { return {"fc"}; }
    // The stem and the four stages, for encoders (U-Net): outputs after relu (H/2), layer1 (H/4),
    // layer2 (H/8), layer3 (H/16) and layer4 (H/32).
    std::vector<torch::Tensor> stages(const torch::Tensor& x);
    int feature_channels() const { return feature_channels_; }

private:
    torch::nn::Conv2d conv1_{nullptr};
    torch::nn::BatchNorm2d bn1_{nullptr};
    torch::nn::MaxPool2d maxpool_{nullptr};
    torch::nn::Sequential layer1_{nullptr}, layer2_{nullptr}, layer3_{nullptr}, layer4_{nullptr};
    torch::nn::Dropout dropout_{nullptr};
    torch::nn::Linear fc_{nullptr};
    int feature_channels_ = 0;
};
TORCH_MODULE(ResNet);

}  // namespace hemoscan

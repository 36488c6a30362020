#pragma once
// EfficientNet-B0 (Tan & Le) with torchvision's module structure and parameter names: features.0 (3x3
// stride-2 conv, BatchNorm, SiLU), features.1..7 (stages of MBConv blocks, features.S.B.block.K, with
// squeeze-and-excitation fc1/fc2), features.8 (1x1 conv to 1280, BatchNorm, SiLU) and classifier.0
// (Dropout) / classifier.1 (Linear), so that a torchvision state dict maps onto it one to one. Stochastic
// depth in training as torchvision (per sample, probability 0.2 x block index / 16). The head is ours:
// global pooling (ModelConfig::pool, in place of torchvision's avgpool, which has no parameters), dropout
// (ModelConfig::dropout) and classifier.1 with one output per label or class. Widths are torchvision's
// (ModelConfig::width must be 1).
#include "hemoscan/models/classifier.hpp"

#include <string>
#include <vector>

namespace hemoscan {

class EfficientNetImpl : public ClassifierImpl {
public:
    // config.dropout must be set.
    explicit EfficientNetImpl(ModelConfig config);

    // features.8's activation: N x 1280 x H/32 x W/32.
    torch::Tensor features(const torch::Tensor& x) override;
    torch::Tensor head(const torch::Tensor& features) override;
    std::vector<std::string> head_modules() const override { return {"classifier"}; }

private:
    torch::nn::Sequential features_{nullptr};
    torch::nn::Sequential classifier_{nullptr};
};
TORCH_MODULE(EfficientNet);

}  // namespace hemoscan

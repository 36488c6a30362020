#pragma once
// DenseNet-121 (Huang et al., DenseNet-BC: growth 32, blocks 6-12-24-16, 64 initial features, bottleneck
// 4 x growth, no dropout inside) with torchvision's module structure and parameter names
// (features.conv0/norm0, features.denseblockK.denselayerJ.norm1/conv1/norm2/conv2,
// features.transitionK.norm/conv, features.norm5, classifier), so that a torchvision state dict maps onto
// it one to one (its published file's older names too: load_state_dict() renames them). The head is ours:
// ReLU, global pooling (ModelConfig::pool), dropout, and `classifier` with one output per label or class.
// Widths are torchvision's (ModelConfig::width must be 1).
#include "hemoscan/models/classifier.hpp"

#include <string>
#include <vector>

namespace hemoscan {

class DenseNetImpl : public ClassifierImpl {
public:
    // config.dropout must be set.
    explicit DenseNetImpl(ModelConfig config);

    // features.norm5's output after the ReLU of torchvision's forward: N x 1024 x H/32 x W/32.
    torch::Tensor features(const torch::Tensor& x) override;
    torch::Tensor head(const torch::Tensor& features) override;
    std::vector<std::string> head_modules() const override { return {"classifier"}; }

private:
    torch::nn::Sequential features_{nullptr};
    torch::nn::Dropout dropout_{nullptr};
    torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(DenseNet);

}  // namespace hemoscan

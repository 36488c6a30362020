#pragma once
// Plain CNN: blocks of conv 3x3 + ReLU + 2x2 max-pool, global average pool, dropout, one hidden
// dense layer with ReLU, output layer. "cnn-simple" (3 blocks of 32 channels, dense 32) and
// "cnn-large" (5 blocks, 32-64-128-128-256 channels, dense 64) are two sizes of it.
#include <vector>

#include "hemoscan/models/classifier.hpp"

namespace hemoscan {

class SimpleCnnImpl : public ClassifierImpl {
public:
    // `widths`: output channels of each conv block (before the width multiplier of `config`);
    // `dense`: units of the hidden dense layer. config.dropout must be set.
    SimpleCnnImpl(ModelConfig config, const std::vector<int>& widths, int dense);

    // Activation of the last conv (before its max-pool): N x widths.back() x H/2^(B-1) x W/2^(B-1).
    torch::Tensor features(const torch::Tensor& x) override;
    torch::Tensor head(const torch::Tensor& features) override;
    std::vector<std::string> head_modules() const override { return {"dense", "out"}; }

private:
    torch::nn::Sequential body_{nullptr};
    torch::nn::MaxPool2d last_pool_{nullptr};
    torch::nn::Dropout dropout_{nullptr};
    torch::nn::Linear dense_{nullptr}, out_{nullptr};
};
TORCH_MODULE(SimpleCnn);

}  // namespace hemoscan

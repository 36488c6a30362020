#pragma once
// "resunet": the U-Net skeleton of models/unet.hpp with every DoubleConv replaced by a residual
// block (He et al. 2016, post-activation, as in ResUNet): Conv2d 3x3 (no bias) -> BatchNorm2d ->
// ReLU -> Conv2d 3x3 (no bias) -> BatchNorm2d, plus the shortcut (identity, or Conv2d 1x1 (no bias)
// -> BatchNorm2d when the channels differ), ReLU after the sum. Parameter names: conv1, bn1, conv2,
// bn2, proj_conv, proj_bn. Includes LibTorch.
#include "hemoscan/models/unet.hpp"

namespace hemoscan {

class ResidualBlockImpl : public SegBlockImpl {
public:
    ResidualBlockImpl(int in, int out);
    torch::Tensor forward(const torch::Tensor& x) override;

private:
    torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, proj_conv_{nullptr};
    torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, proj_bn_{nullptr};
};
TORCH_MODULE(ResidualBlock);

class ResUNetImpl : public UNetSkeletonImpl {
public:
    explicit ResUNetImpl(SegModelConfig config);
};
TORCH_MODULE(ResUNet);

}  // namespace hemoscan

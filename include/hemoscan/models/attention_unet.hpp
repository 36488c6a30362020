#pragma once
// "attention-unet": the U-Net of models/unet.hpp with an additive attention gate (Oktay et al.
// 2018) on every skip connection, before the concat. The gating signal g is the decoder feature at
// that level (the ConvTranspose2d output, same size as the skip x), as in the common 2D ports:
//   F = max(1, c/2) for c skip channels
//   a   = ReLU(BatchNorm2d(Conv2d(g, F, 1, no bias)) + BatchNorm2d(Conv2d(x, F, 1, no bias)))
//   psi = Sigmoid(BatchNorm2d(Conv2d(a, 1, 1, no bias)))          (N x 1 x h x w)
//   out = x * psi
// Parameter names: gates.<l>.{gate_conv, gate_bn, skip_conv, skip_bn, psi_conv, psi_bn}.
// Includes LibTorch.
#include "hemoscan/models/unet.hpp"

namespace hemoscan {

class AttentionGateImpl : public SkipGateImpl {
public:
    AttentionGateImpl(int skip_channels, int gate_channels);
    torch::Tensor forward(const torch::Tensor& skip, const torch::Tensor& gate) override;
    // The attention map (N x 1 x h x w, in [0, 1]) for the given inputs.
    torch::Tensor attention(const torch::Tensor& skip, const torch::Tensor& gate);

private:
    torch::nn::Conv2d gate_conv_{nullptr}, skip_conv_{nullptr}, psi_conv_{nullptr};
    torch::nn::BatchNorm2d gate_bn_{nullptr}, skip_bn_{nullptr}, psi_bn_{nullptr};
};
TORCH_MODULE(AttentionGate);

class AttentionUNetImpl : public UNetSkeletonImpl {
public:
    explicit AttentionUNetImpl(SegModelConfig config);
};
TORCH_MODULE(AttentionUNet);

}  // namespace hemoscan

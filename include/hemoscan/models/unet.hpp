#pragma once
// "unet": U-Net (Ronneberger et al. 2015) with padded convolutions and BatchNorm, and the
// encoder-decoder skeleton that "resunet" and "attention-unet" share. Includes LibTorch.
//
// Exact layer list (w = base_width, D = depth, C = in_channels, K = num_classes); a benchmark
// re-implements it layer for layer, so keep this comment in step with unet.cpp:
//   DoubleConv(a -> b) = Conv2d(a, b, 3, padding 1, bias false), BatchNorm2d(b), ReLU,
//                        Conv2d(b, b, 3, padding 1, bias false), BatchNorm2d(b), ReLU
//   encoder, l = 0 .. D-1:  DoubleConv(l == 0 ? C : w*2^(l-1) -> w*2^l)  -> skip_l,
//                           then MaxPool2d(kernel 2, stride 2)
//   bottleneck:             DoubleConv(w*2^(D-1) -> w*2^D), then Dropout2d(dropout) if dropout > 0
//   decoder, l = D-1 .. 0:  up = ConvTranspose2d(w*2^(l+1), w*2^l, kernel 2, stride 2, bias true)
//                           x = DoubleConv(2*w*2^l -> w*2^l) of cat([skip_l, up], dim 1)
//   head:                   Conv2d(w, K, 1, bias true) -> N x K x H x W logits
// BatchNorm2d: eps 1e-5, momentum 0.1 (PyTorch defaults). Parameter names (state dict):
//   encoder.<l>.{conv1,bn1,conv2,bn2}, bottleneck.{...}, up.<l>, decoder.<l>.{...}, head, where the
//   up/decoder index l is the level (the module lists run l = 0 .. D-1; forward walks them upwards).
// Init (init_weights): Kaiming normal, mode fan_out, ReLU gain, for Conv2d and ConvTranspose2d
// weights (PyTorch's fan computation), zero conv biases; BatchNorm weight 1, bias 0.
// H and W must be divisible by 2^D (else UsageError): no implicit padding or cropping.
// Parameters, depth 4 / base 32 / in 3 / K 2: 7,763,074 (see tests/models/test_unet.cpp; in 1: 7,762,498).
#include <functional>
#include <memory>
#include <vector>

#include "hemoscan/models/segmenter.hpp"

namespace hemoscan {

// One block of the skeleton: a -> b channels at the same spatial size.
class SegBlockImpl : public torch::nn::Module {
public:
    virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

// [Conv2d 3x3 (no bias) -> BatchNorm2d -> ReLU] x 2.
class DoubleConvImpl : public SegBlockImpl {
public:
    DoubleConvImpl(int in, int out);
    torch::Tensor forward(const torch::Tensor& x) override;

private:
    torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
    torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
};
TORCH_MODULE(DoubleConv);

// A filter on a skip connection before the concat (attention gates): skip x (N x c x h x w) and
// gating signal g (the decoder feature at that level) -> N x c x h x w.
class SkipGateImpl : public torch::nn::Module {
public:
    virtual torch::Tensor forward(const torch::Tensor& skip, const torch::Tensor& gate) = 0;
};

// The encoder-decoder of the layer list above, with the block type (and optional skip gates) given
// by the architecture.
class UNetSkeletonImpl : public SegmenterImpl {
public:
    torch::Tensor forward(const torch::Tensor& x) override;

protected:
    using BlockFactory = std::function<std::shared_ptr<SegBlockImpl>(int in, int out)>;
    // (skip channels, gate channels) -> gate; null: skips go straight to the concat.
    using GateFactory = std::function<std::shared_ptr<SkipGateImpl>(int skip, int gate)>;
    UNetSkeletonImpl(SegModelConfig config, const BlockFactory& block, const GateFactory& gate = nullptr);

private:
    std::vector<std::shared_ptr<SegBlockImpl>> encoder_, decoder_;
    std::vector<torch::nn::ConvTranspose2d> up_;
    std::vector<std::shared_ptr<SkipGateImpl>> gates_;
    std::shared_ptr<SegBlockImpl> bottleneck_;
    torch::nn::MaxPool2d pool_{nullptr};
    torch::nn::Dropout2d dropout_{nullptr};  // null when config.dropout == 0
    torch::nn::Conv2d head_{nullptr};
};

class UNetImpl : public UNetSkeletonImpl {
public:
    explicit UNetImpl(SegModelConfig config);
};
TORCH_MODULE(UNet);

// Throws UsageError unless x is N x in_channels x H x W with H and W divisible by 2^depth.
void check_seg_input(const torch::Tensor& x, const SegModelConfig& config);

}  // namespace hemoscan

#include "hemoscan/models/attention_unet.hpp"

#include <algorithm>

namespace hemoscan {

namespace {
torch::nn::Conv2d conv1x1(int in, int out) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(false));
}
}  // namespace

AttentionGateImpl::AttentionGateImpl(int skip_channels, int gate_channels) {
    const int f = std::max(1, skip_channels / 2);
    gate_conv_ = register_module("gate_conv", conv1x1(gate_channels, f));
    gate_bn_ = register_module("gate_bn", torch::nn::BatchNorm2d(f));
    skip_conv_ = register_module("skip_conv", conv1x1(skip_channels, f));
    skip_bn_ = register_module("skip_bn", torch::nn::BatchNorm2d(f));
    psi_conv_ = register_module("psi_conv", conv1x1(f, 1));
    psi_bn_ = register_module("psi_bn", torch::nn::BatchNorm2d(1));
}

torch::Tensor AttentionGateImpl::attention(const torch::Tensor& skip, const torch::Tensor& gate) {
    auto a = torch::relu(gate_bn_(gate_conv_(gate)) + skip_bn_(skip_conv_(skip)));
    return torch::sigmoid(psi_bn_(psi_conv_(a)));
}

torch::Tensor AttentionGateImpl::forward(const torch::Tensor& skip, const torch::Tensor& gate) {
    return skip * attention(skip, gate);
}

AttentionUNetImpl::AttentionUNetImpl(SegModelConfig config)
    : UNetSkeletonImpl(
          std::move(config), [](int in, int out) { return std::make_shared<DoubleConvImpl>(in, out); },
          [](int skip, int gate) { return std::make_shared<AttentionGateImpl>(skip, gate); }) {}

}  // namespace hemoscan

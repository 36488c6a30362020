#include "hemoscan/models/resunet.hpp"

namespace hemoscan {

namespace {
torch::nn::Conv2d conv(int in, int out, int k) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).padding(k / 2).bias(false));
}
}  // namespace

ResidualBlockImpl::ResidualBlockImpl(int in, int out) {
    conv1_ = register_module("conv1", conv(in, out, 3));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(out));
    conv2_ = register_module("conv2", conv(out, out, 3));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(out));
    if (in != out) {
        proj_conv_ = register_module("proj_conv", conv(in, out, 1));
        proj_bn_ = register_module("proj_bn", torch::nn::BatchNorm2d(out));
    }
}

torch::Tensor ResidualBlockImpl::forward(const torch::Tensor& x) {
    auto y = bn2_(conv2_(torch::relu(bn1_(conv1_(x)))));
    return torch::relu(y + (proj_conv_ ? proj_bn_(proj_conv_(x)) : x));
}

ResUNetImpl::ResUNetImpl(SegModelConfig config)
    : UNetSkeletonImpl(std::move(config),
                       [](int in, int out) { return std::make_shared<ResidualBlockImpl>(in, out); }) {}

}  // namespace hemoscan

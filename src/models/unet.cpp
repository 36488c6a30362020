#include "hemoscan/models/unet.hpp"

#include <sstream>

#include "hemoscan/error.hpp"

namespace hemoscan {

DoubleConvImpl::DoubleConvImpl(int in, int out) {
    // No conv bias: BatchNorm's shift replaces it.
    conv1_ = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(out));
    conv2_ = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(out));
}

torch::Tensor DoubleConvImpl::forward(const torch::Tensor& x) {
    auto y = torch::relu(bn1_(conv1_(x)));
    return torch::relu(bn2_(conv2_(y)));
}

void check_seg_input(const torch::Tensor& x, const SegModelConfig& config) {
    const int64_t div = int64_t(1) << config.depth;
    if (x.dim() != 4 || x.size(1) != config.in_channels || x.size(2) % div != 0 || x.size(3) % div != 0) {
        std::ostringstream ss;
        ss << "model '" << config.name << "': expected an N x " << config.in_channels
           << " x H x W input with H and W divisible by 2^depth = " << div << ", got " << x.sizes();
        throw UsageError(ss.str());
    }
}

UNetSkeletonImpl::UNetSkeletonImpl(SegModelConfig config, const BlockFactory& block, const GateFactory& gate)
    : SegmenterImpl(std::move(config)) {
    const int depth = config_.depth, w = config_.base_width;
    auto width = [&](int level) { return w << level; };

    torch::nn::ModuleList encoder, up, decoder, gates;
    for (int l = 0; l < depth; ++l) {
        encoder_.push_back(block(l == 0 ? config_.in_channels : width(l - 1), width(l)));
        encoder->push_back(encoder_.back());
    }
    register_module("encoder", encoder);
    bottleneck_ = register_module("bottleneck", block(width(depth - 1), width(depth)));
    for (int l = 0; l < depth; ++l) {
        up_.push_back(torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(width(l + 1), width(l), 2).stride(2)));
        up->push_back(up_.back());
        if (gate) {
            gates_.push_back(gate(width(l), width(l)));
            gates->push_back(gates_.back());
        }
        decoder_.push_back(block(2 * width(l), width(l)));
        decoder->push_back(decoder_.back());
    }
    register_module("up", up);
    if (gate) register_module("gates", gates);
    register_module("decoder", decoder);
    pool_ = register_module("pool", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2)));
    if (config_.dropout > 0) dropout_ = register_module("dropout", torch::nn::Dropout2d(config_.dropout));
    head_ = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(w, config_.num_classes, 1)));
}

torch::Tensor UNetSkeletonImpl::forward(const torch::Tensor& input) {
    check_seg_input(input, config_);
    const int depth = config_.depth;
    std::vector<torch::Tensor> skips;
    torch::Tensor x = input;
    for (int l = 0; l < depth; ++l) {
        x = encoder_[l]->forward(x);
        skips.push_back(x);
        x = pool_(x);
    }
    x = bottleneck_->forward(x);
    if (dropout_) x = dropout_(x);
    for (int l = depth - 1; l >= 0; --l) {
        const torch::Tensor upx = up_[l](x);
        const torch::Tensor skip = gates_.empty() ? skips[l] : gates_[l]->forward(skips[l], upx);
        x = decoder_[l]->forward(torch::cat({skip, upx}, 1));
    }
    return head_(x);
}

UNetImpl::UNetImpl(SegModelConfig config)
    : UNetSkeletonImpl(std::move(config), [](int in, int out) { return std::make_shared<DoubleConvImpl>(in, out); }) {}

}  // namespace hemoscan

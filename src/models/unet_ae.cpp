#include "hemoscan/models/unet_ae.hpp"

#include <algorithm>
#include <cmath>

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {
constexpr int kLevels = 4;
int scaled(int channels, double width) { return std::max(4, static_cast<int>(std::lround(channels * width))); }
}  // namespace

UNetAutoencoderImpl::UNetAutoencoderImpl(ModelConfig config) : ClassifierImpl(std::move(config)) {
    if (!config_.dropout) throw UsageError("UNetAutoencoder: dropout not set (build models with create_model)");
    auto width = [&](int level) { return scaled(16 << level, config_.width); };

    encoder_list_ = torch::nn::ModuleList();
    up_list_ = torch::nn::ModuleList();
    decoder_list_ = torch::nn::ModuleList();
    for (int l = 0; l < kLevels; ++l) {
        encoder_.push_back(DoubleConv(l == 0 ? config_.in_channels : width(l - 1), width(l)));
        encoder_list_->push_back(encoder_.back());
    }
    register_module("encoder", encoder_list_);
    bottleneck_ = register_module("bottleneck", DoubleConv(width(kLevels - 1), width(kLevels)));
    for (int l = 0; l < kLevels; ++l) {
        up_.push_back(
            torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(width(l + 1), width(l), 2).stride(2)));
        up_list_->push_back(up_.back());
        decoder_.push_back(DoubleConv(width(l), width(l)));
        decoder_list_->push_back(decoder_.back());
    }
    register_module("up", up_list_);
    register_module("decoder", decoder_list_);
    out_conv_ =
        register_module("out_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(width(0), config_.in_channels, 1)));
    pool_ = register_module("pool", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).ceil_mode(true)));
    dropout_ = register_module("dropout", torch::nn::Dropout(*config_.dropout));
    out_ =
        register_module("out", torch::nn::Linear(pooled_channels(width(kLevels), config_.pool), config_.num_outputs));
}

torch::Tensor UNetAutoencoderImpl::features(const torch::Tensor& input) {
    torch::Tensor x = input;
    for (auto& block : encoder_) x = pool_(block(x));
    return bottleneck_(x);
}

torch::Tensor UNetAutoencoderImpl::head(const torch::Tensor& features) {
    return out_(dropout_(global_pool(features, config_.pool)));
}

torch::Tensor UNetAutoencoderImpl::reconstruct(const torch::Tensor& input) {
    if (input.dim() != 4 || input.size(1) != config_.in_channels)
        throw UsageError("unet-ae: reconstruct expects an N x " + std::to_string(config_.in_channels) +
                         " x H x W input");
    torch::Tensor x = features(input);
    for (int l = kLevels - 1; l >= 0; --l) x = decoder_[l](up_[l](x));
    x = torch::sigmoid(out_conv_(x));
    return x.slice(2, 0, input.size(2)).slice(3, 0, input.size(3));
}

std::vector<torch::Tensor> UNetAutoencoderImpl::autoencoder_parameters() const {
    std::vector<torch::Tensor> out;
    for (const auto& p : named_parameters())
        if (p.key().rfind("out.", 0) != 0) out.push_back(p.value());
    return out;
}

}  // namespace hemoscan

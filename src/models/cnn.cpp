#include "hemoscan/models/cnn.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {

int scaled(int channels, double width) { return std::max(4, static_cast<int>(std::lround(channels * width))); }

void conv_bn_relu(torch::nn::Sequential& seq, int in, int out) {
    // No conv bias: BatchNorm's shift replaces it.
    seq->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
    seq->push_back(torch::nn::BatchNorm2d(out));
    seq->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
}

torch::nn::MaxPool2d pool() { return torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).ceil_mode(true)); }

}  // namespace

CnnImpl::CnnImpl(ModelConfig config) : ClassifierImpl(std::move(config)) {
    if (!config_.dropout) throw UsageError("Cnn: dropout not set (build models with create_model)");
    const double w = config_.width;
    const int stem = scaled(32, w);
    const int widths[] = {scaled(32, w), scaled(64, w), scaled(128, w), scaled(256, w)};

    body_ = torch::nn::Sequential();
    // A single conv at full resolution, then pool: the two-conv blocks run at 1/2 size and less.
    conv_bn_relu(body_, config_.in_channels, stem);
    body_->push_back(pool());
    int in = stem;
    for (size_t b = 0; b < std::size(widths); ++b) {
        conv_bn_relu(body_, in, widths[b]);
        conv_bn_relu(body_, widths[b], widths[b]);
        if (b + 1 < std::size(widths)) body_->push_back(pool());
        in = widths[b];
    }
    register_module("body", body_);
    dropout_ = register_module("dropout", torch::nn::Dropout(*config_.dropout));
    out_ = register_module("out", torch::nn::Linear(pooled_channels(in, config_.pool), config_.num_outputs));
}

torch::Tensor CnnImpl::features(const torch::Tensor& x) { return body_->forward(x); }

void CnnImpl::fold_batch_norm() {
    // conv(x) * s + (beta - mean * s) with s = gamma / sqrt(var + eps) is one conv with scaled
    // weights and a bias.
    torch::NoGradGuard no_grad;
    const std::vector<torch::nn::AnyModule> layers(body_->begin(), body_->end());
    torch::nn::Sequential folded;
    for (size_t i = 0; i < layers.size(); ++i) {
        auto* conv = layers[i].ptr()->as<torch::nn::Conv2d>();
        auto* bn = i + 1 < layers.size() ? layers[i + 1].ptr()->as<torch::nn::BatchNorm2d>() : nullptr;
        if (!conv || !bn || !bn->options.track_running_stats() || !bn->options.affine()) {
            folded->push_back(layers[i]);
            continue;
        }
        const torch::Tensor scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
        const torch::Tensor bias = conv->bias.defined() ? conv->bias : torch::zeros_like(bn->running_mean);
        const auto& o = conv->options;
        torch::nn::Conv2d fused(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(), o.kernel_size())
                                    .stride(o.stride())
                                    .padding(o.padding())
                                    .dilation(o.dilation())
                                    .groups(o.groups())
                                    .padding_mode(o.padding_mode())
                                    .bias(true));
        fused->weight.copy_(conv->weight * scale.view({-1, 1, 1, 1}));
        fused->bias.copy_((bias - bn->running_mean) * scale + bn->bias);
        folded->push_back(fused);
        ++i;  // the BatchNorm is now part of the conv
    }
    folded->eval();
    body_ = replace_module("body", folded);
}

torch::Tensor CnnImpl::head(const torch::Tensor& features) {
    return out_(dropout_(global_pool(features, config_.pool)));
}

}  // namespace hemoscan

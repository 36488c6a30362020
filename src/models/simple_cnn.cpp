#include "hemoscan/models/simple_cnn.hpp"

#include <algorithm>
#include <cmath>

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {
int scaled(int channels, double width) { return std::max(4, static_cast<int>(std::lround(channels * width))); }
}  // namespace

SimpleCnnImpl::SimpleCnnImpl(ModelConfig config, const std::vector<int>& widths, int dense)
    : ClassifierImpl(std::move(config)) {
    if (widths.empty()) throw UsageError("SimpleCnn: needs at least one conv block");
    if (!config_.dropout) throw UsageError("SimpleCnn: dropout not set (build models with create_model)");
    const double w = config_.width;
    body_ = torch::nn::Sequential();
    int in = config_.in_channels;
    for (size_t i = 0; i < widths.size(); ++i) {
        const int out = scaled(widths[i], w);
        body_->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1)));
        body_->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
        // The last block's pool belongs to the head, so that features() is the conv activation.
        if (i + 1 < widths.size())
            body_->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).ceil_mode(true)));
        in = out;
    }
    register_module("body", body_);
    last_pool_ = register_module("last_pool", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).ceil_mode(true)));
    dropout_ = register_module("dropout", torch::nn::Dropout(*config_.dropout));
    dense_ = register_module("dense", torch::nn::Linear(pooled_channels(in, config_.pool), scaled(dense, w)));
    out_ = register_module("out", torch::nn::Linear(scaled(dense, w), config_.num_outputs));
}

torch::Tensor SimpleCnnImpl::features(const torch::Tensor& x) { return body_->forward(x); }

torch::Tensor SimpleCnnImpl::head(const torch::Tensor& features) {
    auto x = global_pool(last_pool_(features), config_.pool);
    x = torch::relu(dense_(dropout_(x)));
    return out_(x);
}

}  // namespace hemoscan

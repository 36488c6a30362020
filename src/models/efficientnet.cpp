// EfficientNet-B0 with torchvision's names (models/efficientnet.hpp).
#include "hemoscan/models/efficientnet.hpp"

#include <algorithm>

#include "hemoscan/error.hpp"
#include "models/nested_sequential.hpp"

namespace hemoscan {

namespace {

namespace nn = torch::nn;

// torchvision's Conv2dNormActivation: conv without bias ("0"), BatchNorm ("1"), SiLU ("2") when `activation`.
// B0 keeps BatchNorm2d's defaults (eps 1e-5, momentum 0.1), as torchvision's efficientnet_b0 (B5-B7 differ).
NestedSequential conv_norm_act(int in, int out, int kernel, int stride, int groups, bool activation) {
    NestedSequential s(
        nn::Conv2d(
            nn::Conv2dOptions(in, out, kernel).stride(stride).padding((kernel - 1) / 2).groups(groups).bias(false)),
        nn::BatchNorm2d(nn::BatchNorm2dOptions(out).eps(1e-5).momentum(0.1)));
    if (activation) s->push_back(nn::SiLU());
    return s;
}

// Channel attention: global average, 1x1 conv to `squeeze` channels, SiLU, 1x1 conv back, sigmoid, scale
// (torchvision's SqueezeExcitation; its convs have biases).
class SqueezeExcitationImpl : public nn::Module {
public:
    SqueezeExcitationImpl(int channels, int squeeze)
        : fc1(register_module("fc1", nn::Conv2d(nn::Conv2dOptions(channels, squeeze, 1)))),
          fc2(register_module("fc2", nn::Conv2d(nn::Conv2dOptions(squeeze, channels, 1)))) {}
    torch::Tensor forward(const torch::Tensor& x) {
        const torch::Tensor scale = torch::adaptive_avg_pool2d(x, {1, 1});
        return torch::sigmoid(fc2(torch::silu(fc1(scale)))) * x;
    }
    nn::Conv2d fc1;
    nn::Conv2d fc2;
};
TORCH_MODULE(SqueezeExcitation);

// Drops the residual branch of whole samples with probability p in training and scales the kept ones by
// 1 / (1 - p) (torchvision's StochasticDepth, mode "row"); draws from the torch RNG.
class StochasticDepthImpl : public nn::Module {
public:
    explicit StochasticDepthImpl(double p) : p_(p) {}
    torch::Tensor forward(const torch::Tensor& x) {
        if (!is_training() || p_ == 0.0) return x;
        const double survival = 1.0 - p_;
        std::vector<int64_t> size(static_cast<size_t>(x.dim()), 1);
        size[0] = x.size(0);
        torch::Tensor noise = torch::empty(size, x.options()).bernoulli_(survival);
        if (survival > 0.0) noise.div_(survival);
        return x * noise;
    }

private:
    double p_;
};
TORCH_MODULE(StochasticDepth);

// Inverted residual block (torchvision's MBConv): `block` = [1x1 expansion,] depthwise conv, squeeze-and-
// excitation, 1x1 projection without activation; a residual connection when the shape is kept.
class MBConvImpl : public nn::Module {
public:
    MBConvImpl(int expand_ratio, int kernel, int stride, int in, int out, double stochastic_depth_prob)
        : residual_(stride == 1 && in == out) {
        // All of B0's channel counts are multiples of 8, so torchvision's _make_divisible keeps in x ratio.
        const int expanded = in * expand_ratio;
        block_ = nn::Sequential();
        if (expanded != in) block_->push_back(conv_norm_act(in, expanded, 1, 1, 1, true));
        block_->push_back(conv_norm_act(expanded, expanded, kernel, stride, expanded, true));
        block_->push_back(SqueezeExcitation(expanded, std::max(1, in / 4)));
        block_->push_back(conv_norm_act(expanded, out, 1, 1, 1, false));
        register_module("block", block_);
        stochastic_depth_ = register_module("stochastic_depth", StochasticDepth(stochastic_depth_prob));
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor y = block_->forward(x);
        return residual_ ? stochastic_depth_(y) + x : y;
    }

private:
    bool residual_;
    nn::Sequential block_{nullptr};
    StochasticDepth stochastic_depth_{nullptr};
};
TORCH_MODULE(MBConv);

// One row of torchvision's B0 table (EfficientNet paper, table 1).
struct StageConfig {
    int expand_ratio, kernel, stride, in, out, layers;
};

}  // namespace

EfficientNetImpl::EfficientNetImpl(ModelConfig config) : ClassifierImpl(std::move(config)) {
    if (config_.width != 1.0) {
        throw UsageError("model '" + config_.name +
                         "': width must be 1 (torchvision's widths, so that its weights fit)");
    }
    static const StageConfig kB0[] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                                      {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                                      {6, 3, 1, 192, 320, 1}};
    constexpr double kStochasticDepth = 0.2;
    constexpr int kLastChannels = 1280;
    int total_blocks = 0;
    for (const auto& s : kB0) total_blocks += s.layers;

    features_ = nn::Sequential();
    features_->push_back(conv_norm_act(config_.in_channels, kB0[0].in, 3, 2, 1, true));
    int block_index = 0;
    for (const auto& s : kB0) {
        NestedSequential stage;
        for (int b = 0; b < s.layers; ++b) {
            // Deeper blocks are dropped more often.
            const double p = kStochasticDepth * block_index / total_blocks;
            stage->push_back(MBConv(s.expand_ratio, s.kernel, b == 0 ? s.stride : 1, b == 0 ? s.in : s.out, s.out, p));
            ++block_index;
        }
        features_->push_back(stage);
    }
    features_->push_back(conv_norm_act(kB0[6].out, kLastChannels, 1, 1, 1, true));
    register_module("features", features_);
    classifier_ = register_module(
        "classifier", nn::Sequential(nn::Dropout(config_.dropout.value_or(0.0)),
                                     nn::Linear(pooled_channels(kLastChannels, config_.pool), config_.num_outputs)));
}

torch::Tensor EfficientNetImpl::features(const torch::Tensor& x) { return features_->forward(x); }

torch::Tensor EfficientNetImpl::head(const torch::Tensor& f) {
    return classifier_->forward(global_pool(f, config_.pool));
}

}  // namespace hemoscan

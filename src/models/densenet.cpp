// DenseNet-121 with torchvision's names (models/densenet.hpp).
#include "hemoscan/models/densenet.hpp"

#include "hemoscan/error.hpp"
#include "models/nested_sequential.hpp"

namespace hemoscan {

namespace {

namespace nn = torch::nn;

nn::Conv2d conv(int in, int out, int kernel, int stride, int padding) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// BatchNorm, ReLU, 1x1 conv to bn_size x growth channels, BatchNorm, ReLU, 3x3 conv to growth channels
// (torchvision's _DenseLayer; its ReLUs are modules without parameters, registered for the same structure).
class DenseLayerImpl : public nn::Module {
public:
    DenseLayerImpl(int in, int growth, int bn_size)
        : norm1(register_module("norm1", nn::BatchNorm2d(in))),
          relu1(register_module("relu1", nn::ReLU(nn::ReLUOptions(true)))),
          conv1(register_module("conv1", conv(in, bn_size * growth, 1, 1, 0))),
          norm2(register_module("norm2", nn::BatchNorm2d(bn_size * growth))),
          relu2(register_module("relu2", nn::ReLU(nn::ReLUOptions(true)))),
          conv2(register_module("conv2", conv(bn_size * growth, growth, 3, 1, 1))) {}
    torch::Tensor forward(const torch::Tensor& x) { return conv2(relu2(norm2(conv1(relu1(norm1(x)))))); }
    nn::BatchNorm2d norm1;
    nn::ReLU relu1;
    nn::Conv2d conv1;
    nn::BatchNorm2d norm2;
    nn::ReLU relu2;
    nn::Conv2d conv2;
};
TORCH_MODULE(DenseLayer);

// Each layer sees the concatenation of the block input and every earlier layer's output; the block
// returns the concatenation of all of them (torchvision's _DenseBlock).
class DenseBlockImpl : public nn::Module {
public:
    DenseBlockImpl(int layers, int in, int growth, int bn_size) {
        for (int i = 0; i < layers; ++i) {
            layers_.push_back(
                register_module("denselayer" + std::to_string(i + 1), DenseLayer(in + i * growth, growth, bn_size)));
        }
    }
    torch::Tensor forward(const torch::Tensor& x) {
        std::vector<torch::Tensor> all{x};
        for (auto& layer : layers_) all.push_back(layer(torch::cat(all, 1)));
        return torch::cat(all, 1);
    }
    std::vector<DenseLayer> layers_;
};
TORCH_MODULE(DenseBlock);

// BatchNorm, ReLU, 1x1 conv halving the channels, 2x2 average pool (torchvision's _Transition, a Sequential
// with named children).
NestedSequential transition(int in, int out) {
    NestedSequential t;
    t->push_back("norm", nn::BatchNorm2d(in));
    t->push_back("relu", nn::ReLU(nn::ReLUOptions(true)));
    t->push_back("conv", conv(in, out, 1, 1, 0));
    t->push_back("pool", nn::AvgPool2d(nn::AvgPool2dOptions(2).stride(2)));
    return t;
}

}  // namespace

DenseNetImpl::DenseNetImpl(ModelConfig config) : ClassifierImpl(std::move(config)) {
    if (config_.width != 1.0) {
        throw UsageError("model '" + config_.name +
                         "': width must be 1 (torchvision's widths, so that its weights fit)");
    }
    constexpr int kGrowth = 32, kBnSize = 4, kInitFeatures = 64;
    const int block_layers[] = {6, 12, 24, 16};
    features_ = nn::Sequential({{"conv0", conv(config_.in_channels, kInitFeatures, 7, 2, 3)},
                                {"norm0", nn::BatchNorm2d(kInitFeatures)},
                                {"relu0", nn::ReLU(nn::ReLUOptions(true))},
                                {"pool0", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1))}});
    int channels = kInitFeatures;
    for (int i = 0; i < 4; ++i) {
        const std::string k = std::to_string(i + 1);
        features_->push_back("denseblock" + k, DenseBlock(block_layers[i], channels, kGrowth, kBnSize));
        channels += block_layers[i] * kGrowth;
        if (i != 3) {
            features_->push_back("transition" + k, transition(channels, channels / 2));
            channels /= 2;
        }
    }
    features_->push_back("norm5", nn::BatchNorm2d(channels));
    register_module("features", features_);
    dropout_ = register_module("dropout", nn::Dropout(config_.dropout.value_or(0.0)));
    classifier_ =
        register_module("classifier", nn::Linear(pooled_channels(channels, config_.pool), config_.num_outputs));
}

torch::Tensor DenseNetImpl::features(const torch::Tensor& x) { return torch::relu(features_->forward(x)); }

torch::Tensor DenseNetImpl::head(const torch::Tensor& f) { return classifier_(dropout_(global_pool(f, config_.pool))); }

}  // namespace hemoscan

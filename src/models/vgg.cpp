// VGG-19 and VGG-19-BN with torchvision's names (models/vgg.hpp).
#include "hemoscan/models/vgg.hpp"

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace nn = torch::nn;

VggImpl::VggImpl(ModelConfig config, bool batch_norm) : ClassifierImpl(std::move(config)) {
    if (config_.width != 1.0) {
        throw UsageError("model '" + config_.name +
                         "': width must be 1 (torchvision's widths, so that its weights fit)");
    }
    if (config_.pool != "avg") {
        throw UsageError("model '" + config_.name +
                         "': pool must be avg (VGG flattens its 7x7 average-pooled map into " +
                         "classifier.0, as torchvision does; got '" + config_.pool + "')");
    }
    // torchvision's configuration "E": output channels of each 3x3 conv, 0 for a 2x2 max pool.
    static const int kConfigE[] = {64,  64,  0,   128, 128, 0,   256, 256, 256, 256, 0,
                                   512, 512, 512, 512, 0,   512, 512, 512, 512, 0};
    features_ = nn::Sequential();
    int in = config_.in_channels;
    for (int v : kConfigE) {
        if (v == 0) {
            last_pool_ = nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2));
            features_->push_back(last_pool_);
            continue;
        }
        features_->push_back(nn::Conv2d(nn::Conv2dOptions(in, v, 3).padding(1)));
        if (batch_norm) features_->push_back(nn::BatchNorm2d(v));
        features_->push_back(nn::ReLU(nn::ReLUOptions(true)));  // in place, as torchvision: less memory
        in = v;
    }
    register_module("features", features_);
    avgpool_ = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({7, 7})));
    classifier_ = register_module(
        "classifier",
        nn::Sequential(nn::Linear(512 * 7 * 7, 4096), nn::ReLU(nn::ReLUOptions(true)), nn::Dropout(0.5),
                       nn::Linear(4096, 4096), nn::ReLU(nn::ReLUOptions(true)),
                       nn::Dropout(config_.dropout.value_or(0.5)), nn::Linear(4096, config_.num_outputs)));
}

torch::Tensor VggImpl::features(const torch::Tensor& x) {
    torch::Tensor y = x;
    // Every module but the last MaxPool, which head() applies.
    for (auto it = features_->begin(); it + 1 != features_->end(); ++it) y = it->forward(y);
    return y;
}

torch::Tensor VggImpl::head(const torch::Tensor& f) {
    return classifier_->forward(torch::flatten(avgpool_(last_pool_(f)), 1));
}

}  // namespace hemoscan

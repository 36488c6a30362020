// ResNet-18/34/50 with torchvision's names (models/resnet.hpp).
#include "hemoscan/models/resnet.hpp"

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {

namespace nn = torch::nn;

nn::Conv2d conv(int in, int out, int kernel, int stride) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

// Identity or 1x1 conv + BatchNorm, as torchvision's `downsample` (children "0" and "1").
nn::Sequential downsample(int in, int out, int stride) {
    if (stride == 1 && in == out) return nullptr;
    return nn::Sequential(conv(in, out, 1, stride), nn::BatchNorm2d(out));
}

class BasicBlockImpl : public nn::Module {
public:
    static constexpr int kExpansion = 1;
    BasicBlockImpl(int in, int planes, int stride)
        : conv1(register_module("conv1", conv(in, planes, 3, stride))),
          bn1(register_module("bn1", nn::BatchNorm2d(planes))),
          conv2(register_module("conv2", conv(planes, planes, 3, 1))),
          bn2(register_module("bn2", nn::BatchNorm2d(planes))),
          down(downsample(in, planes, stride)) {
        if (down) register_module("downsample", down);
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor y = torch::relu(bn1(conv1(x)));
        y = bn2(conv2(y));
        return torch::relu(y + (down ? down->forward(x) : x));
    }
    nn::Conv2d conv1;
    nn::BatchNorm2d bn1;
    nn::Conv2d conv2;
    nn::BatchNorm2d bn2;
    nn::Sequential down;
};
TORCH_MODULE(BasicBlock);

class BottleneckImpl : public nn::Module {
public:
    static constexpr int kExpansion = 4;
    BottleneckImpl(int in, int planes, int stride)
        : conv1(register_module("conv1", conv(in, planes, 1, 1))),
          bn1(register_module("bn1", nn::BatchNorm2d(planes))),
          conv2(register_module("conv2", conv(planes, planes, 3, stride))),
          bn2(register_module("bn2", nn::BatchNorm2d(planes))),
          conv3(register_module("conv3", conv(planes, planes * kExpansion, 1, 1))),
          bn3(register_module("bn3", nn::BatchNorm2d(planes * kExpansion))),
          down(downsample(in, planes * kExpansion, stride)) {
        if (down) register_module("downsample", down);
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor y = torch::relu(bn1(conv1(x)));
        y = torch::relu(bn2(conv2(y)));
        y = bn3(conv3(y));
        return torch::relu(y + (down ? down->forward(x) : x));
    }
    nn::Conv2d conv1;
    nn::BatchNorm2d bn1;
    nn::Conv2d conv2;
    nn::BatchNorm2d bn2;
    nn::Conv2d conv3;
    nn::BatchNorm2d bn3;
    nn::Sequential down;
};
TORCH_MODULE(Bottleneck);

// One stage: `blocks` blocks, the first with `stride`; returns the stage and updates `in`.
nn::Sequential stage(int& in, int planes, int blocks, int stride, bool bottleneck) {
    nn::Sequential s;
    for (int b = 0; b < blocks; ++b) {
        const int st = b == 0 ? stride : 1;
        if (bottleneck) {
            s->push_back(Bottleneck(in, planes, st));
            in = planes * BottleneckImpl::kExpansion;
        } else {
            s->push_back(BasicBlock(in, planes, st));
            in = planes * BasicBlockImpl::kExpansion;
        }
    }
    return s;
}

}  // namespace

ResNetImpl::ResNetImpl(ModelConfig config, std::vector<int> layers, bool bottleneck) : ClassifierImpl(std::move(config)) {
    if (config_.width != 1.0) {
        throw UsageError("model '" + config_.name + "': width must be 1 (torchvision's widths, so that its weights fit)");
    }
    if (layers.size() != 4) throw UsageError("model '" + config_.name + "': a ResNet has 4 stages");
    conv1_ = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(config_.in_channels, 64, 7).stride(2).padding(3).bias(false)));
    bn1_ = register_module("bn1", nn::BatchNorm2d(64));
    maxpool_ = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
    int in = 64;
    layer1_ = register_module("layer1", stage(in, 64, layers[0], 1, bottleneck));
    layer2_ = register_module("layer2", stage(in, 128, layers[1], 2, bottleneck));
    layer3_ = register_module("layer3", stage(in, 256, layers[2], 2, bottleneck));
    layer4_ = register_module("layer4", stage(in, 512, layers[3], 2, bottleneck));
    feature_channels_ = in;
    dropout_ = register_module("dropout", nn::Dropout(config_.dropout.value_or(0.0)));
    fc_ = register_module("fc", nn::Linear(pooled_channels(in, config_.pool), config_.num_outputs));
}

std::vector<torch::Tensor> ResNetImpl::stages(const torch::Tensor& x) {
    std::vector<torch::Tensor> out;
    out.push_back(torch::relu(bn1_(conv1_(x))));
    out.push_back(layer1_->forward(maxpool_(out.back())));
    out.push_back(layer2_->forward(out.back()));
    out.push_back(layer3_->forward(out.back()));
    out.push_back(layer4_->forward(out.back()));
    return out;
}

torch::Tensor ResNetImpl::features(const torch::Tensor& x) {
    torch::Tensor y = torch::relu(bn1_(conv1_(x)));
    y = layer1_->forward(maxpool_(y));
    y = layer2_->forward(y);
    y = layer3_->forward(y);
    return layer4_->forward(y);
}

torch::Tensor ResNetImpl::head(const torch::Tensor& f) { return fc_(dropout_(global_pool(f, config_.pool))); }

}  // namespace hemoscan

// U-Net on a torchvision ResNet encoder (models/resnet_unet.hpp).
#include "hemoscan/models/resnet_unet.hpp"

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {

SegModelConfig five_levels(SegModelConfig c) {
    c.depth = 5;  // the ResNet's own downsampling: stem /2, maxpool /4, layer2-4 /8 /16 /32
    return c;
}

}  // namespace

ResNetUNetImpl::ResNetUNetImpl(SegModelConfig config, const std::string& encoder_name, std::vector<int> layers)
    : SegmenterImpl(five_levels(std::move(config))) {
    ModelConfig ec;
    ec.name = encoder_name;
    ec.in_channels = config_.in_channels;
    ec.num_outputs = 1;
    ec.dropout = 0.0;
    encoder_ = register_module("encoder", std::make_shared<ResNetImpl>(ec, std::move(layers), false));
    // Only the stages are used: the classifier's head would be weights without gradients.
    encoder_->unregister_module("fc");
    encoder_->unregister_module("dropout");
    const int w = config_.base_width;
    if (w < 8) throw UsageError("model '" + config_.name + "': base width must be >= 8 (got " + std::to_string(w) + ")");
    // Input channels of each block: the upsampled map plus the skip of that size (ResNet-18/34 stages:
    // stem 64, layer1 64, layer2 128, layer3 256; layer4 512 feeds the first block).
    const std::vector<int> skips{256, 128, 64, 64, 0};
    const std::vector<int> outs{8 * w, 4 * w, 2 * w, w, w / 2};
    int in = 512;
    torch::nn::ModuleList list;
    for (size_t i = 0; i < outs.size(); ++i) {
        decoder_.push_back(DoubleConv(in + skips[i], outs[i]));
        list->push_back(decoder_.back());
        in = outs[i];
    }
    register_module("decoder", list);
    head_ = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, config_.num_classes, 3).padding(1)));
}

torch::Tensor ResNetUNetImpl::forward(const torch::Tensor& x) {
    check_seg_input(x, config_);
    const std::vector<torch::Tensor> f = encoder_->stages(x);  // H/2, H/4, H/8, H/16, H/32
    torch::Tensor y = f[4];
    for (size_t i = 0; i < decoder_.size(); ++i) {
        y = torch::nn::functional::interpolate(
            y, torch::nn::functional::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(
                   torch::kNearest));
        if (i < 4) y = torch::cat({y, f[3 - i]}, 1);
        y = decoder_[i]->forward(y);
    }
    return head_(y);
}

}  // namespace hemoscan

#pragma once
// "resnet34-unet" / "resnet18-unet": a U-Net whose encoder is torchvision's ResNet (names under
// "encoder.", so that torchvision's resnet34/resnet18 weights load into it; its fc is dropped), with
// the decoder of segmentation_models_pytorch's Unet: five blocks, each nearest-neighbour upsampling x2,
// concat with the encoder stage of that size (layer3, layer2, layer1, the stem; none at full size) and
// DoubleConv (conv 3x3/BN/ReLU x2) to 8w, 4w, 2w, w, w/2 channels (w = base_width, 32 by default),
// then a 3x3 conv to the classes. Five levels always (config.depth is set to 5): H and W divisible by 32.
// Includes LibTorch.
#include <string>
#include <vector>

#include "hemoscan/models/resnet.hpp"
#include "hemoscan/models/segmenter.hpp"
#include "hemoscan/models/unet.hpp"

namespace hemoscan {

class ResNetUNetImpl : public SegmenterImpl {
public:
    // encoder_name: the ResNet ("resnet34"); layers: its blocks per stage (BasicBlocks).
    ResNetUNetImpl(SegModelConfig config, const std::string& encoder_name, std::vector<int> layers);
    torch::Tensor forward(const torch::Tensor& x) override;
    torch::nn::Module* encoder() override { return encoder_.get(); }

private:
    std::shared_ptr<ResNetImpl> encoder_;
    std::vector<DoubleConv> decoder_;
    torch::nn::Conv2d head_{nullptr};
};
TORCH_MODULE(ResNetUNet);

}  // namespace hemoscan

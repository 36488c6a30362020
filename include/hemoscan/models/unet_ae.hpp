#pragma once
// "unet-ae" (seed 000): a U-Net autoencoder used as a classifier. Includes LibTorch.
//   features(x): the U-Net encoder of models/unet.hpp (4 levels of DoubleConv with 16, 32, 64, 128
//                channels x width, each followed by MaxPool2d(2, ceil mode)) and the bottleneck
//                DoubleConv (256 x width) -> N x 256w x ceil(H/16) x ceil(W/16)
//   head(f):     global average pool, dropout (default 0.3), Linear(256w -> outputs)
//   reconstruct: features, then a decoder WITHOUT skip connections (the bottleneck must carry the
//                image): per level ConvTranspose2d(2, stride 2) + DoubleConv, 256w -> 128w -> .. 16w,
//                Conv2d 1x1 (16w -> in_channels), sigmoid; cropped to H x W (the ceil-mode pools
//                pad sizes that are not multiples of 16).
// The decoder is trained by train/pretrain.hpp (reconstruction pre-training) and saved with the
// model; forward() does not use it.
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/unet.hpp"

namespace hemoscan {

class UNetAutoencoderImpl : public ClassifierImpl {
public:
    // config.dropout must be set (create_model() fills the default).
    explicit UNetAutoencoderImpl(ModelConfig config);

    torch::Tensor features(const torch::Tensor& x) override;
    torch::Tensor head(const torch::Tensor& features) override;
    std::vector<std::string> head_modules() const override { return {"out"}; }
    // N x C x H x W input -> N x C x H x W reconstruction in [0, 1].
    torch::Tensor reconstruct(const torch::Tensor& x);
    // Parameters of the encoder, bottleneck and decoder (what reconstruction trains; not the head).
    std::vector<torch::Tensor> autoencoder_parameters() const;

private:
    torch::nn::ModuleList encoder_list_{nullptr}, up_list_{nullptr}, decoder_list_{nullptr};
    std::vector<DoubleConv> encoder_, decoder_;
    std::vector<torch::nn::ConvTranspose2d> up_;
    DoubleConv bottleneck_{nullptr};
    torch::nn::MaxPool2d pool_{nullptr};
    torch::nn::Conv2d out_conv_{nullptr};
    torch::nn::Dropout dropout_{nullptr};
    torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(UNetAutoencoder);

}  // namespace hemoscan

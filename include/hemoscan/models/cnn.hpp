#pragma once
// The default classifier ("cnn"): a conv/BatchNorm/ReLU stem with max-pool, then four blocks of two
// conv/BatchNorm/ReLU layers (32, 64, 128, 256 channels) with a max-pool between blocks, global
// average pool, dropout and a linear output. About 1.2M parameters; the stem pools early so that
// 256 px slices stay cheap on a CPU (~1 GMAC per 256x256 image).
#include "hemoscan/models/classifier.hpp"

namespace hemoscan {

class CnnImpl : public ClassifierImpl {
public:
    // config.dropout must be set (create_model() fills the default).
    explicit CnnImpl(ModelConfig config);

    // Activation of the last block: N x 256*width x H/16 x W/16.
    torch::Tensor features(const torch::Tensor& x) override;
    torch::Tensor head(const torch::Tensor& features) override;
    std::vector<std::string> head_modules() const override { return {"out"}; }
    // Inference only (the model in eval mode, not trained or saved afterwards): folds each
    // BatchNorm's running statistics into the convolution before it. Same outputs up to rounding,
    // one pass less over every activation. The parameter names change (no BatchNorm entries).
    void fold_batch_norm();

private:
    torch::nn::Sequential body_{nullptr};
    torch::nn::Dropout dropout_{nullptr};
    torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(Cnn);

}  // namespace hemoscan

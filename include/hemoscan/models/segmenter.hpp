#pragma once
// Base class of every segmentation model. Includes LibTorch: include it only where tensors are needed.
// forward(x): N x C x H x W input -> N x K x H x W logits (K = num_classes, class 0 = background).
#include <torch/torch.h>

#include "hemoscan/models/seg_registry.hpp"

namespace hemoscan {

class SegmenterImpl : public torch::nn::Module {
public:
    explicit SegmenterImpl(SegModelConfig config) : config_(std::move(config)) {}
    ~SegmenterImpl() override = default;

    virtual torch::Tensor forward(const torch::Tensor& x) = 0;
    // The part with a classifier's structure and names, into which that classifier's pre-trained weights
    // load (`pretrained`; the backbone of fine-tuning), or null when the model has none.
    virtual torch::nn::Module* encoder() { return nullptr; }
    const SegModelConfig& config() const { return config_; }

protected:
    SegModelConfig config_;
};

}  // namespace hemoscan

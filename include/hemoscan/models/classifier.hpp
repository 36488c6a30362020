#pragma once
// Base class of every classifier. Includes LibTorch: include it only where tensors are needed.
//
// A classifier is split in two so that Grad-CAM can reach the last conv feature map:
//   features(x): N x C x H x W input -> N x C' x h x w (the last conv block's activation)
//   head(f):     features -> N x num_outputs logits (pooling, dropout, dense layers)
// and forward(x) == head(features(x)). Models return logits; probabilities() applies the
// activation that matches the config (sigmoid per output, or softmax across outputs).
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hemoscan/models/registry.hpp"

namespace hemoscan {

class ClassifierImpl : public torch::nn::Module {
public:
    explicit ClassifierImpl(ModelConfig config) : config_(std::move(config)) {}
    ~ClassifierImpl() override = default;

    virtual torch::Tensor features(const torch::Tensor& x) = 0;
    virtual torch::Tensor head(const torch::Tensor& features) = 0;
    virtual torch::Tensor forward(const torch::Tensor& x) { return head(features(x)); }

    // Names of the submodules that belong to the head (what head() runs that has parameters), e.g. {"fc"}:
    // everything else is the backbone, frozen during fine-tuning's first epochs and trained at a lower rate.
    virtual std::vector<std::string> head_modules() const = 0;

    // The config with the dropout resolved to the value in use.
    const ModelConfig& config() const { return config_; }

protected:
    ModelConfig config_;
};

// Sigmoid (multi-label) or softmax over dim 1 (multi-class) of N x K logits.
torch::Tensor probabilities(const torch::Tensor& logits, bool multiclass);

// N x C x H x W -> N x pooled_channels(C, pool): the global pooling of ModelConfig::pool.
torch::Tensor global_pool(const torch::Tensor& features, const std::string& pool);
int pooled_channels(int channels, const std::string& pool);

// Whether `name` (as in named_parameters()) lies in one of model.head_modules().
bool is_head_parameter(const ClassifierImpl& model, const std::string& name);

// Number of scalar parameters (trainable or not; buffers excluded).
std::int64_t parameter_count(const torch::nn::Module& module);

// Kaiming-normal (ReLU; fan_out for models with BatchNorm, fan_in without) conv weights with zero bias, BatchNorm
// weight 1 / bias 0, for every submodule; linear layers keep torch's default init. Draws from the torch RNG
// (torch::manual_seed).
void init_weights(torch::nn::Module& module);

}  // namespace hemoscan

#pragma once
// Gradient averaging that overlaps the backward pass, as PyTorch's DistributedDataParallel does it: c10d's
// Reducer holds the trainable parameters in buckets (the first small, then up to `bucket_bytes`, in the
// reverse order gradients become ready) and starts each bucket's all-reduce as soon as its last gradient
// is computed, while backward goes on with the earlier layers. Includes LibTorch: trainer sources only.
#include <torch/torch.h>

#include <memory>

namespace hemoscan {

class ProcessGroup;

class GradientSync {
public:
    GradientSync(ProcessGroup& group, torch::nn::Module& module, size_t bucket_bytes = 25u << 20);
    ~GradientSync();
    GradientSync(const GradientSync&) = delete;
    GradientSync& operator=(const GradientSync&) = delete;

    // loss.backward(); when it returns, the gradient of every trainable parameter is the mean over the
    // ranks. A parameter without a gradient on any rank keeps none (frozen layers, a decoder only
    // pre-training uses). The set of trainable parameters may change between calls (fine-tuning
    // unfreezes layers): the buckets are then laid out again. A rank that stopped answering ends the
    // call with InputError naming this rank after the group's timeout.
    void backward(const torch::Tensor& loss);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace hemoscan

#pragma once
// Segmentation losses (LibTorch). logits: N x K x H x W; target: N x H x W int64 class indices.
#include <torch/torch.h>

#include <string>

namespace hemoscan {

enum class SegLoss {
    Dice,    // soft Dice over the foreground classes (1..K-1), averaged over classes, batch-pooled
    CeDice,  // cross-entropy + soft Dice (nnU-Net's default)
    Focal,   // focal loss (gamma 2) + soft Dice
};
// "dice", "ce-dice", "focal"; UsageError otherwise.
SegLoss parse_seg_loss(const std::string& name);
const char* to_string(SegLoss loss);

// Soft Dice loss, 1 - mean over foreground classes of (2|P.T| + eps) / (|P| + |T| + eps) with P the
// softmax probabilities; classes absent from both prediction and target in the batch count as 1.
torch::Tensor soft_dice_loss(const torch::Tensor& logits, const torch::Tensor& target, double eps = 1e-5);
// Focal loss: mean of -(1 - p_t)^gamma * log(p_t) over pixels.
torch::Tensor focal_loss(const torch::Tensor& logits, const torch::Tensor& target, double gamma = 2.0);
// The chosen combination. class_weights (K, optional) weights the cross-entropy term.
torch::Tensor seg_loss(const torch::Tensor& logits, const torch::Tensor& target, SegLoss loss,
                       const torch::Tensor& class_weights = {});

}  // namespace hemoscan

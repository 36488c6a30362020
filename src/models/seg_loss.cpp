#include "hemoscan/models/seg_loss.hpp"

#include <sstream>

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {

// logits N x K x H x W (K >= 2), target N x H x W int64 in 0..K-1; UsageError otherwise.
void check(const char* fn, const torch::Tensor& logits, const torch::Tensor& target) {
    std::ostringstream ss;
    if (logits.dim() != 4 || logits.size(1) < 2) {
        ss << fn << ": expected N x K x H x W logits with K >= 2, got " << logits.sizes();
    } else if (target.dim() != 3 || target.size(0) != logits.size(0) || target.size(1) != logits.size(2) ||
               target.size(2) != logits.size(3)) {
        ss << fn << ": target of shape " << target.sizes() << " does not match logits " << logits.sizes();
    } else if (target.scalar_type() != torch::kInt64) {
        ss << fn << ": target must hold int64 class indices, got " << target.scalar_type();
    } else if (target.numel() > 0 && (target.min().item<int64_t>() < 0 || target.max().item<int64_t>() >= logits.size(1))) {
        ss << fn << ": target values must be in 0.." << logits.size(1) - 1;
    } else {
        return;
    }
    throw UsageError(ss.str());
}

// Soft Dice over classes 1..K-1 without the input checks.
torch::Tensor dice_unchecked(const torch::Tensor& logits, const torch::Tensor& target, double eps) {
    const int64_t k = logits.size(1);
    const auto probs = torch::softmax(logits, 1).slice(1, 1, k);  // N x (K-1) x H x W
    const auto onehot =
        torch::one_hot(target, k).permute({0, 3, 1, 2}).slice(1, 1, k).to(probs.scalar_type());
    const std::vector<int64_t> pooled = {0, 2, 3};  // batch and pixels: one Dice per class
    const auto inter = (probs * onehot).sum(pooled);
    const auto denom = probs.sum(pooled) + onehot.sum(pooled);
    const auto dice = (2 * inter + eps) / (denom + eps);
    return 1 - dice.mean();
}

torch::Tensor focal_unchecked(const torch::Tensor& logits, const torch::Tensor& target, double gamma) {
    const auto logp_t = torch::log_softmax(logits, 1).gather(1, target.unsqueeze(1)).squeeze(1);  // N x H x W
    const auto p_t = logp_t.exp();
    return (-(1 - p_t).pow(gamma) * logp_t).mean();
}

}  // namespace

SegLoss parse_seg_loss(const std::string& name) {
    if (name == "dice") return SegLoss::Dice;
    if (name == "ce-dice") return SegLoss::CeDice;
    if (name == "focal") return SegLoss::Focal;
    throw UsageError("unknown segmentation loss '" + name + "' (known: dice, ce-dice, focal)");
}

const char* to_string(SegLoss loss) {
    switch (loss) {
        case SegLoss::Dice: return "dice";
        case SegLoss::CeDice: return "ce-dice";
        case SegLoss::Focal: return "focal";
    }
    return "?";
}

torch::Tensor soft_dice_loss(const torch::Tensor& logits, const torch::Tensor& target, double eps) {
    check("soft_dice_loss", logits, target);
    return dice_unchecked(logits, target, eps);
}

torch::Tensor focal_loss(const torch::Tensor& logits, const torch::Tensor& target, double gamma) {
    check("focal_loss", logits, target);
    return focal_unchecked(logits, target, gamma);
}

torch::Tensor seg_loss(const torch::Tensor& logits, const torch::Tensor& target, SegLoss loss,
                       const torch::Tensor& class_weights) {
    check("seg_loss", logits, target);
    if (class_weights.defined() && (class_weights.dim() != 1 || class_weights.size(0) != logits.size(1))) {
        std::ostringstream ss;
        ss << "seg_loss: class_weights must have " << logits.size(1) << " values, got shape " << class_weights.sizes();
        throw UsageError(ss.str());
    }
    const auto dice = dice_unchecked(logits, target, 1e-5);
    switch (loss) {
        case SegLoss::Dice: return dice;
        case SegLoss::CeDice: {
            auto options = torch::nn::functional::CrossEntropyFuncOptions();
            if (class_weights.defined()) options.weight(class_weights.to(logits.options()));
            return torch::nn::functional::cross_entropy(logits, target, options) + dice;
        }
        case SegLoss::Focal: return focal_unchecked(logits, target, 2.0) + dice;
    }
    throw UsageError("seg_loss: unknown loss");
}

}  // namespace hemoscan

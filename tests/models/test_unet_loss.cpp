// Segmentation losses against hand-computed values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "hemoscan/error.hpp"
#include "hemoscan/models/seg_loss.hpp"

using namespace hemoscan;

namespace {

torch::Tensor target_2x2(std::vector<int64_t> v) { return torch::tensor(v, torch::kInt64).view({1, 2, 2}); }

double value(const torch::Tensor& t) { return t.item<double>(); }

}  // namespace

TEST(SegLossNames, ParseAndPrint) {
    for (const char* name : {"dice", "ce-dice", "focal"}) EXPECT_STREQ(to_string(parse_seg_loss(name)), name);
    EXPECT_THROW(parse_seg_loss("bce"), UsageError);
}

TEST(SoftDice, PerfectPredictionIsZero) {
    const auto target = target_2x2({1, 0, 2, 1});
    const auto logits = torch::one_hot(target, 3).permute({0, 3, 1, 2}).to(torch::kFloat32) * 30;
    EXPECT_LT(value(soft_dice_loss(logits, target)), 1e-6);
    // A class absent from both the target and the (confident) prediction counts as Dice 1.
    const auto bg = torch::zeros({1, 2, 2}, torch::kInt64);
    const auto bg_logits = torch::one_hot(bg, 3).permute({0, 3, 1, 2}).to(torch::kFloat32) * 30;
    EXPECT_LT(value(soft_dice_loss(bg_logits, bg)), 1e-6);
    // The opposite of the truth everywhere: Dice 0 for the foreground class.
    const auto wrong = torch::one_hot(1 - target_2x2({1, 0, 0, 1}), 2).permute({0, 3, 1, 2}).to(torch::kFloat32) * 30;
    EXPECT_NEAR(value(soft_dice_loss(wrong, target_2x2({1, 0, 0, 1}), 0.0)), 1.0, 1e-6);
}

TEST(SoftDice, HandCases2x2) {
    // K = 2, logits 0: foreground probability 0.5 everywhere. One foreground pixel:
    // |P.T| = 0.5, |P| = 2, |T| = 1 -> Dice = 1 / 3, loss 2/3.
    const auto zeros2 = torch::zeros({1, 2, 2, 2});
    EXPECT_NEAR(value(soft_dice_loss(zeros2, target_2x2({1, 0, 0, 0}), 0.0)), 2.0 / 3.0, 1e-6);
    // With eps: 1 - (1 + eps) / (3 + eps).
    EXPECT_NEAR(value(soft_dice_loss(zeros2, target_2x2({1, 0, 0, 0}), 0.5)), 1 - 1.5 / 3.5, 1e-6);
    // K = 3, probabilities 1/3: classes 1 and 2 each |P.T| = 1/3, |P| = 4/3, |T| = 1 -> 2/7;
    // averaged over the two foreground classes: loss 5/7.
    EXPECT_NEAR(value(soft_dice_loss(torch::zeros({1, 3, 2, 2}), target_2x2({1, 2, 0, 0}), 0.0)), 5.0 / 7.0, 1e-6);
}

TEST(SoftDice, PoolsOverTheBatch) {
    // Two 2x2 images, one foreground pixel in the first: batch Dice = 2 * 0.5 / (8 * 0.5 + 1) = 1/5
    // (per-image averaging would give 5/6 as the loss).
    const auto target = torch::tensor({1, 0, 0, 0, 0, 0, 0, 0}, torch::kInt64).view({2, 2, 2});
    EXPECT_NEAR(value(soft_dice_loss(torch::zeros({2, 2, 2, 2}), target, 0.0)), 0.8, 1e-6);
}

TEST(SoftDice, HasGradients) {
    auto logits = torch::zeros({1, 2, 2, 2}, torch::requires_grad());
    soft_dice_loss(logits, target_2x2({1, 0, 0, 0})).backward();
    // Raising the foreground logit helps at the foreground pixel and hurts elsewhere.
    EXPECT_LT(logits.grad()[0][1][0][0].item<float>(), 0.f);
    EXPECT_GT(logits.grad()[0][1][1][1].item<float>(), 0.f);
}

TEST(Focal, HandCases) {
    // p_t = 0.5 everywhere: (1 - 0.5)^2 * ln 2 per pixel.
    EXPECT_NEAR(value(focal_loss(torch::zeros({1, 2, 2, 2}), target_2x2({1, 0, 1, 0}))), 0.25 * std::log(2.0), 1e-6);
    // gamma 0 is the cross-entropy.
    EXPECT_NEAR(value(focal_loss(torch::zeros({1, 2, 2, 2}), target_2x2({1, 0, 1, 0}), 0.0)), std::log(2.0), 1e-6);
    // Logits (ln 3, 0) on every pixel: p(0) = 0.75. Target 0 on two pixels, 1 on two:
    // mean of 0.25^2 * -ln 0.75 and 0.75^2 * -ln 0.25.
    auto logits = torch::zeros({1, 2, 2, 2});
    logits.select(1, 0).fill_(std::log(3.0));
    const double expected = 0.5 * (0.0625 * -std::log(0.75) + 0.5625 * -std::log(0.25));
    EXPECT_NEAR(value(focal_loss(logits, target_2x2({0, 1, 1, 0}))), expected, 1e-6);
}

TEST(SegLossCombined, SumsTheTermsAndWeightsTheCrossEntropy) {
    // Class-1 logit 0 at the foreground pixel, -2 at the three background ones (class-0 logit 0):
    // per-pixel NLL ln 2 at the first, L = ln(1 + e^-2) at the others.
    auto logits = torch::zeros({1, 2, 2, 2});
    logits.select(1, 1).fill_(-2.0);
    logits[0][1][0][0] = 0.0;
    const auto target = target_2x2({1, 0, 0, 0});
    const double l = std::log(1 + std::exp(-2.0));
    const double dice = value(soft_dice_loss(logits, target));
    EXPECT_NEAR(value(seg_loss(logits, target, SegLoss::Dice)), dice, 1e-7);
    EXPECT_NEAR(value(seg_loss(logits, target, SegLoss::CeDice)), (std::log(2.0) + 3 * l) / 4 + dice, 1e-6);
    // Weights (1, 3): PyTorch's weighted mean, sum(w_i nll_i) / sum(w_i) = (3 ln 2 + 3 L) / 6.
    EXPECT_NEAR(value(seg_loss(logits, target, SegLoss::CeDice, torch::tensor({1.0f, 3.0f}))),
                (3 * std::log(2.0) + 3 * l) / 6 + dice, 1e-6);
    EXPECT_NEAR(value(seg_loss(logits, target, SegLoss::Focal)), value(focal_loss(logits, target)) + dice, 1e-7);
    EXPECT_THROW(seg_loss(logits, target, SegLoss::CeDice, torch::ones({3})), UsageError);
}

TEST(SegLossCombined, BadShapesAreUsageErrors) {
    const auto logits = torch::zeros({1, 2, 2, 2});
    EXPECT_THROW(soft_dice_loss(logits, torch::zeros({1, 3, 2}, torch::kInt64)), UsageError);
    EXPECT_THROW(soft_dice_loss(logits, torch::zeros({1, 2, 2}, torch::kFloat32)), UsageError);
    EXPECT_THROW(soft_dice_loss(torch::zeros({1, 1, 2, 2}), torch::zeros({1, 2, 2}, torch::kInt64)), UsageError);
    EXPECT_THROW(focal_loss(logits, target_2x2({0, 2, 0, 0})), UsageError);  // class 2 of 2
}

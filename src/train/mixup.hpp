#pragma once
// Mixup (Zhang et al. 2018) for classification training: each image of a batch is blended with
// another image of the same batch, and their labels with the same weight. Private to src/train.
#include <torch/torch.h>

#include <cstdint>

namespace hemoscan::train_detail {

struct MixDraw {
    double lambda = 1;   // weight of the batch itself; 1 - lambda goes to the permuted partner
    torch::Tensor perm;  // partner index per row (int64)
};

// lambda ~ Beta(alpha, alpha) and a random permutation of n rows, both from `seed` (deterministic).
MixDraw draw_mixup(double alpha, int64_t n, std::uint64_t seed);

// images[i] = lambda * images[i] + (1 - lambda) * images[perm[i]], labels the same (soft labels).
void apply_mixup(torch::Tensor& images, torch::Tensor& labels, const MixDraw& draw);

}  // namespace hemoscan::train_detail

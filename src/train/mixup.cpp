#include "train/mixup.hpp"

#include <random>

#include "hemoscan/error.hpp"

namespace hemoscan::train_detail {

MixDraw draw_mixup(double alpha, int64_t n, std::uint64_t seed) {
    if (!(alpha > 0)) throw UsageError("mixup: alpha must be > 0");
    std::mt19937_64 rng(seed);
    // Beta(a, a) as X / (X + Y) with X, Y ~ Gamma(a, 1).
    std::gamma_distribution<double> gamma(alpha, 1.0);
    const double x = gamma(rng), y = gamma(rng);
    MixDraw d;
    d.lambda = x + y > 0 ? x / (x + y) : 0.5;
    std::vector<int64_t> perm(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    d.perm = torch::tensor(perm, torch::kLong);
    return d;
}

void apply_mixup(torch::Tensor& images, torch::Tensor& labels, const MixDraw& draw) {
    const auto perm = draw.perm.to(images.device());
    const double l = draw.lambda;
    images = images * l + images.index_select(0, perm) * (1 - l);
    labels = labels * l + labels.index_select(0, perm.to(labels.device())) * (1 - l);
}

}  // namespace hemoscan::train_detail

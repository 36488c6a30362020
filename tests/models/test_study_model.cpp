// The study model (models/study_model.hpp): shapes, padding that changes nothing, and a task that
// only reading neighbouring slices can solve.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hemoscan/error.hpp"
#include "hemoscan/models/study_model.hpp"

using namespace hemoscan;

TEST(StudyModel, ShapesAndPaddingChangeNothing) {
    torch::manual_seed(1);
    StudyModel model(StudyModelConfig{4, 3, 8, 3, 0.0});
    model->eval();
    torch::NoGradGuard ng;
    torch::Tensor x = torch::randn({2, 6, 4});
    torch::Tensor mask = torch::ones({2, 6});
    mask.index_put_({1, torch::indexing::Slice(4, 6)}, 0);  // the second study has 4 slices
    auto [slices, study] = model->forward(x, mask);
    ASSERT_EQ(slices.sizes(), (std::vector<int64_t>{2, 6, 3}));
    ASSERT_EQ(study.sizes(), (std::vector<int64_t>{2, 3}));
    // The study's logits are the maximum over its own slices.
    EXPECT_TRUE(torch::allclose(study[1], std::get<0>(slices[1].slice(0, 0, 4).max(0))));
    // Other values in the padding: the same logits for the valid slices and the study.
    torch::Tensor y = x.clone();
    y.index_put_({1, torch::indexing::Slice(4, 6)}, 100.0);
    auto [slices2, study2] = model->forward(y, mask);
    EXPECT_TRUE(torch::allclose(slices2[1].slice(0, 0, 4), slices[1].slice(0, 0, 4), 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(study2, study, 1e-5, 1e-6));
    // The same study alone (no padding) gives the same logits.
    auto [alone, alone_study] = model->forward(x[1].slice(0, 0, 4).unsqueeze(0), torch::ones({1, 4}));
    EXPECT_TRUE(torch::allclose(alone[0], slices[1].slice(0, 0, 4), 1e-5, 1e-6));
    EXPECT_THROW(model->forward(torch::randn({2, 6, 5}), mask), UsageError);
    EXPECT_THROW(StudyModel(StudyModelConfig{4, 3, 8, 2, 0.0}), UsageError);
}

// Slice k is positive when a neighbour (k-1 or k+1), not itself, has a positive feature: a per-slice
// model cannot learn it, the study model must.
TEST(StudyModel, LearnsFromNeighbouringSlices) {
    torch::manual_seed(3);
    const int64_t B = 32, T = 10;
    torch::Tensor x = (torch::rand({B, T, 1}) < 0.2).to(torch::kFloat32);
    torch::Tensor target = torch::zeros({B, T, 1});
    target.slice(1, 1, T) += x.slice(1, 0, T - 1);
    target.slice(1, 0, T - 1) += x.slice(1, 1, T);
    target = (target > 0).to(torch::kFloat32);
    const torch::Tensor mask = torch::ones({B, T});
    StudyModel model(StudyModelConfig{1, 1, 16, 3, 0.0});
    torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-2));
    double first = 0, last = 0;
    for (int step = 0; step < 150; ++step) {
        opt.zero_grad();
        auto loss = torch::binary_cross_entropy_with_logits(model->forward(x, mask).first, target);
        loss.backward();
        opt.step();
        if (step == 0) first = loss.item<double>();
        last = loss.item<double>();
    }
    model->eval();
    torch::NoGradGuard ng;
    const torch::Tensor test_x = (torch::rand({B, T, 1}) < 0.2).to(torch::kFloat32);
    torch::Tensor test_t = torch::zeros({B, T, 1});
    test_t.slice(1, 1, T) += test_x.slice(1, 0, T - 1);
    test_t.slice(1, 0, T - 1) += test_x.slice(1, 1, T);
    test_t = (test_t > 0).to(torch::kFloat32);
    const double accuracy =
        ((model->forward(test_x, mask).first > 0).to(torch::kFloat32) == test_t).to(torch::kFloat32).mean().item<double>();
    EXPECT_LT(last, 0.5 * first);
    EXPECT_GT(accuracy, 0.95) << "loss " << first << " -> " << last;
}

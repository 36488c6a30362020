// The study model (models/study_model.hpp): shapes, padding that changes nothing, and a task that
// only reading neighbouring slices can solve.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/registry.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/models/study_model.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

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

// The input transform: log-odds, clipped and scaled, one row per slice; padding keeps each study's rows.
TEST(StudyModel, FeaturesAndPaddedBatches) {
    const torch::Tensor f = study_features({{0.5, 0.9}, {1.0, 0.0}});
    ASSERT_EQ(f.sizes(), (std::vector<int64_t>{2, 2}));
    EXPECT_NEAR(f[0][0].item<float>(), 0.0, 1e-6);
    EXPECT_NEAR(f[0][1].item<float>(), std::log(9.0) / 4.0, 1e-5);
    EXPECT_NEAR(f[1][0].item<float>(), 2.0, 1e-6);  // clipped at +8 log-odds
    EXPECT_NEAR(f[1][1].item<float>(), -2.0, 1e-6);
    EXPECT_THROW(study_features({}), UsageError);
    EXPECT_THROW(study_features({{0.5}, {0.5, 0.5}}), UsageError);

    const StudyBatch b = pad_studies({torch::ones({3, 2}), 2 * torch::ones({1, 2})}, {torch::ones({3, 1}), torch::ones({1, 1})});
    ASSERT_EQ(b.x.sizes(), (std::vector<int64_t>{2, 3, 2}));
    EXPECT_EQ(b.mask.sum().item<float>(), 4.f);
    EXPECT_EQ(b.x[1][0][0].item<float>(), 2.f);
    EXPECT_EQ(b.x[1][2][0].item<float>(), 0.f);
    EXPECT_EQ(b.y.sum().item<float>(), 4.f);
    EXPECT_THROW(pad_studies({}), UsageError);
}

// One file holds the slice model and the study model: load_model() reads the first, load_study_model()
// the second with its weights; a plain classifier file has no study model.
TEST(StudyModel, OneFileWithTheSliceModel) {
    test::TempDir d;
    ModelConfig mc;
    mc.name = "cnn-simple";
    mc.in_channels = 1;
    mc.num_outputs = 2;
    auto slice = create_model(mc);
    torch::manual_seed(5);
    StudyModel study(StudyModelConfig{2, 2, 8, 3, 0.0});
    const nlohmann::json meta = {{"labels", {"any", "subdural"}}, {"study", {{"slice_thresholds", {0.3, 0.4}}}}};
    save_study_model(d / "m.pt", *slice, meta, *study);
    const LoadedModel loaded = load_model(d / "m.pt");
    EXPECT_EQ(loaded.model->config().name, "cnn-simple");
    EXPECT_EQ(loaded.meta["study"]["model"]["hidden"], 8);
    EXPECT_EQ(loaded.meta["study"]["slice_thresholds"], nlohmann::json({0.3, 0.4}));
    auto back = load_study_model(d / "m.pt");
    study->eval();
    torch::NoGradGuard ng;
    const torch::Tensor x = torch::randn({1, 5, 2});
    EXPECT_TRUE(torch::allclose(back->forward(x, torch::ones({1, 5})).first, study->forward(x, torch::ones({1, 5})).first));
    EXPECT_EQ(study_model_config_from_json(study_model_config_to_json(study->config())).kernel, 3);
    EXPECT_THROW(study_model_config_from_json({{"name", "other"}}), UsageError);

    save_model(d / "plain.pt", *slice, {{"labels", {"any", "subdural"}}});
    test::expect_input_error([&] { load_study_model(d / "plain.pt"); }, {"plain.pt", "--task study"});
    EXPECT_THROW(save_study_model(d / "bad.pt", *slice, {{"study", 3}}, *study), UsageError);
    EXPECT_FALSE(fs::exists(d / "bad.pt"));
}

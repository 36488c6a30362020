// The Predictor's inference preparation (BatchNorm folded into the convs, channels-last weights,
// NHWC batches) and its batched Grad-CAM keep the results of the plain model and of heatmap().
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/cnn.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

// A fresh cnn whose BatchNorm statistics are not the trivial 0/1 (a few training-mode passes over
// shifted random inputs), so that folding them is really tested.
std::shared_ptr<ClassifierImpl> calibrated_cnn(int outputs) {
    torch::manual_seed(11);
    ModelConfig c;
    c.in_channels = 3;
    c.num_outputs = outputs;
    c.width = 0.5;
    auto model = create_model(c);
    model->train();
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) model->forward(torch::rand({4, 3, 32, 32}) * 2 + 0.5);
    model->eval();
    return model;
}

std::vector<Sample> random_samples(int n, int size) {
    std::vector<Sample> out(static_cast<size_t>(n));
    cv::RNG rng(5);
    for (auto& s : out) {
        s.image = cv::Mat(size, size, CV_32FC3);
        rng.fill(s.image, cv::RNG::UNIFORM, 0.0, 1.0);
    }
    return out;
}

// The model's own forward on the samples (NCHW, contiguous), as sigmoid probabilities.
torch::Tensor reference(ClassifierImpl& model, const std::vector<Sample>& samples, bool flip_average) {
    std::vector<torch::Tensor> items;
    for (const auto& s : samples) {
        items.push_back(torch::from_blob(s.image.data, {s.image.rows, s.image.cols, 3}, torch::kFloat32)
                            .permute({2, 0, 1})
                            .clone());
    }
    torch::NoGradGuard no_grad;
    const torch::Tensor x = torch::stack(items);
    torch::Tensor p = torch::sigmoid(model.forward(x));
    if (flip_average) p = 0.5 * (p + torch::sigmoid(model.forward(x.flip({3}))));
    return p;
}

std::filesystem::path save_cnn(const test::TempDir& d, const ClassifierImpl& model, const std::string& tta) {
    const std::filesystem::path path = d / "model.pt";
    save_model(path, model, {{"labels", {"a", "b", "c"}}, {"tta", tta}});
    return path;
}

}  // namespace

TEST(Cnn, FoldBatchNormKeepsOutputsAndDropsTheBatchNorms) {
    auto model = calibrated_cnn(3);
    auto* cnn = dynamic_cast<CnnImpl*>(model.get());
    ASSERT_NE(cnn, nullptr);
    const torch::Tensor x = torch::rand({2, 3, 32, 32});
    torch::NoGradGuard no_grad;
    const torch::Tensor before = model->forward(x);
    const auto params_before = parameter_count(*model);
    cnn->fold_batch_norm();
    const torch::Tensor after = model->forward(x);
    EXPECT_LT((after - before).abs().max().item<double>(), 1e-4) << before << after;
    for (const auto& m : model->modules()) EXPECT_EQ(m->as<torch::nn::BatchNorm2d>(), nullptr);
    // Each conv gains a bias (out channels) and loses its BatchNorm's weight and bias (2 x out).
    int64_t conv_out = 0;
    for (const auto& m : model->modules()) {
        if (auto* conv = m->as<torch::nn::Conv2d>()) conv_out += conv->options.out_channels();
    }
    EXPECT_EQ(parameter_count(*model), params_before - conv_out);
}

TEST(Predictor, MatchesTheModelItLoads) {
    test::TempDir d;
    auto model = calibrated_cnn(3);
    for (const std::string& tta : std::vector<std::string>{"none", "hflip"}) {
        Predictor p(save_cnn(d, *model, tta), 1);
        const auto samples = random_samples(5, 32);
        const auto preds = p.predict_samples(samples, 2);  // batches of 2, 2 and 1
        const torch::Tensor want = reference(*model, samples, tta == "hflip");
        ASSERT_EQ(preds.size(), 5u);
        for (size_t i = 0; i < preds.size(); ++i) {
            ASSERT_EQ(preds[i].probabilities.size(), 3u);
            for (size_t l = 0; l < 3; ++l) {
                EXPECT_NEAR(preds[i].probabilities[l], want[int64_t(i)][int64_t(l)].item<double>(), 1e-5)
                    << tta << " sample " << i << " label " << l;
            }
        }
    }
}

TEST(Predictor, BatchedHeatmapsEqualPerSampleHeatmaps) {
    test::TempDir d;
    auto model = calibrated_cnn(3);
    Predictor p(save_cnn(d, *model, "hflip"), 1);
    const auto samples = random_samples(5, 32);
    std::vector<cv::Mat> heatmaps;
    const auto preds = p.predict_samples(samples, 4, heatmaps);
    const auto plain = p.predict_samples(samples, 4);
    ASSERT_EQ(preds.size(), 5u);
    ASSERT_EQ(heatmaps.size(), 5u);
    for (size_t i = 0; i < preds.size(); ++i) {
        for (size_t l = 0; l < 3; ++l) EXPECT_NEAR(preds[i].probabilities[l], plain[i].probabilities[l], 1e-6);
        EXPECT_EQ(preds[i].decisions, plain[i].decisions);
        const auto& pr = preds[i].probabilities;
        const int top = static_cast<int>(std::max_element(pr.begin(), pr.end()) - pr.begin());
        const cv::Mat single = p.heatmap(samples[i], top);
        ASSERT_EQ(heatmaps[i].size(), single.size());
        ASSERT_EQ(heatmaps[i].type(), CV_32FC1);
        EXPECT_LT(cv::norm(heatmaps[i], single, cv::NORM_INF), 1e-4) << "sample " << i;
        double lo = 0, hi = 0;
        cv::minMaxLoc(heatmaps[i], &lo, &hi);
        EXPECT_GE(lo, 0.0);
        EXPECT_LE(hi, 1.0);
    }
}

// Mixup (--mixup ALPHA): the draw is seeded and Beta-shaped, images and labels are blended with the
// same weight and partner, and a classifier trained with it still learns a separable task.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "hemoscan/error.hpp"
#include "hemoscan/train/segment.hpp"
#include "hemoscan/train/trainer.hpp"
#include "hemoscan/util/fs.hpp"
#include "nlohmann/json.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"
#include "train/mixup.hpp"
#include "train/small_options.hpp"

using namespace hemoscan;
using namespace hemoscan::train_detail;

TEST(Mixup, DrawIsSeededAndAPermutation) {
    const MixDraw a = draw_mixup(0.4, 16, 123), b = draw_mixup(0.4, 16, 123), c = draw_mixup(0.4, 16, 124);
    EXPECT_DOUBLE_EQ(a.lambda, b.lambda);
    EXPECT_TRUE(torch::equal(a.perm, b.perm));
    EXPECT_FALSE(a.lambda == c.lambda && torch::equal(a.perm, c.perm));
    EXPECT_GE(a.lambda, 0.0);
    EXPECT_LE(a.lambda, 1.0);
    EXPECT_TRUE(torch::equal(std::get<0>(a.perm.sort()), torch::arange(16, torch::kLong)));
    EXPECT_THROW(draw_mixup(0, 4, 1), UsageError);
}

// Beta(a, a): a small alpha puts lambda near 0 or 1 (mild mixing), a large one near 0.5.
TEST(Mixup, LambdaFollowsBeta) {
    auto mean_distance_from_half = [](double alpha) {
        double s = 0, mean = 0;
        const int n = 2000;
        for (int i = 0; i < n; ++i) {
            const double l = draw_mixup(alpha, 2, static_cast<std::uint64_t>(i)).lambda;
            s += std::abs(l - 0.5);
            mean += l;
        }
        EXPECT_NEAR(mean / n, 0.5, 0.03) << alpha;  // symmetric
        return s / n;
    };
    EXPECT_GT(mean_distance_from_half(0.1), 0.38);
    EXPECT_LT(mean_distance_from_half(20), 0.08);
    // E|X - 1/2| for X ~ Beta(1, 1) = U(0, 1) is 1/4.
    EXPECT_NEAR(mean_distance_from_half(1), 0.25, 0.02);
}

TEST(Mixup, BlendsImagesAndLabelsWithTheSamePartner) {
    torch::Tensor images = torch::arange(3, torch::kFloat).view({3, 1, 1, 1}).expand({3, 1, 2, 2}).clone();
    torch::Tensor labels = torch::tensor({1.f, 0.f, 1.f, 0.f, 0.f, 1.f}).view({3, 2});
    MixDraw d;
    d.lambda = 0.75;
    d.perm = torch::tensor(std::vector<int64_t>{2, 0, 1}, torch::kLong);
    apply_mixup(images, labels, d);
    // Row 0 = 0.75 * row 0 + 0.25 * row 2, row 1 = 0.75 * row 1 + 0.25 * row 0, row 2 = 0.75 * row 2 + 0.25 * row 1.
    EXPECT_FLOAT_EQ(images[0][0][1][1].item<float>(), 0.5f);
    EXPECT_FLOAT_EQ(images[1][0][0][0].item<float>(), 0.75f);
    EXPECT_FLOAT_EQ(images[2][0][0][1].item<float>(), 1.75f);
    EXPECT_TRUE(torch::allclose(labels, torch::tensor({0.75f, 0.25f, 1.f, 0.f, 0.25f, 0.75f}).view({3, 2})));
}

TEST(Mixup, ClassifierStillLearnsAndRecordsIt) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 24);
    TrainOptions o = test::small_options(d / "data", d / "run");
    o.mixup = 0.4;
    TrainResult r = train_classifier(o);
    EXPECT_GT(r.metrics["macro_auc"].get<double>(), 0.95) << r.metrics.dump(2);
    const auto cfg = nlohmann::json::parse(read_file(d / "run" / "config.json"));
    EXPECT_DOUBLE_EQ(cfg["options"]["mixup"].get<double>(), 0.4);
    EXPECT_DOUBLE_EQ(load_run_options(d / "run").mixup, 0.4);

    o.out = (d / "bad").string();
    o.mixup = -1;
    EXPECT_THROW(train_classifier(o), UsageError);
    o.mixup = 0.4;
    o.task = "segment";
    o.model = "unet";
    test::expect_usage_error([&] { train_segmenter(o); }, {"`mixup`"});
    EXPECT_FALSE(fs::exists(d / "bad"));
}

// Class folders (softmax): mixed labels go through the probability-target cross-entropy.
TEST(Mixup, SoftmaxClassesLearnWithMixedLabels) {
    test::TempDir d;
    test::write_blob_class_folders(d / "data", 12, 48, 5);
    TrainOptions o = test::small_options(d / "data", d / "run");
    o.epochs = 10;
    o.mixup = 0.4;
    TrainResult r = train_classifier(o);
    ASSERT_TRUE(r.metrics.contains("multiclass")) << r.metrics.dump(2);
    EXPECT_GT(r.metrics["labels"]["hemorrhage"]["auc"].get<double>(), 0.95) << r.metrics.dump(2);
}

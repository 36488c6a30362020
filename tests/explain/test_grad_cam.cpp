// Grad-CAM: exact maps for a hand-made model, and localisation after training a small CNN on a
// synthetic "bright square" task.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/core.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/explain/grad_cam.hpp"

using namespace hemoscan;

namespace {

struct TorchThreads : ::testing::Environment {
    void SetUp() override { torch::set_num_threads(2); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new TorchThreads);

// features(x) = x (one channel), head(f) = scale * mean over space: d logit / d f is the constant
// scale / (h * w), so Grad-CAM is ReLU(sign(scale) * x) / max, exactly.
class IdentityImpl : public ClassifierImpl {
public:
    explicit IdentityImpl(float scale) : ClassifierImpl(make_config()) {
        scale_ = register_parameter("scale", torch::full({1}, scale));
    }
    torch::Tensor features(const torch::Tensor& x) override { return x; }
    torch::Tensor head(const torch::Tensor& f) override { return f.mean({2, 3}) * scale_; }
    std::vector<std::string> head_modules() const override { return {}; }

private:
    static ModelConfig make_config() {
        ModelConfig c;
        c.name = "identity";
        return c;
    }
    torch::Tensor scale_;
};

cv::Mat to_mat(const torch::Tensor& t) {  // H x W float tensor -> CV_32F copy
    auto c = t.contiguous();
    return cv::Mat(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), CV_32F, c.data_ptr<float>()).clone();
}

struct SquareSet {
    torch::Tensor images;           // N x 1 x 32 x 32
    torch::Tensor labels;           // N x 1
    std::vector<cv::Rect> squares;  // empty rect for negatives
};

// Noise in [0, 0.5); positives get a bright 8x8 square (value 1) at a random position.
SquareSet make_squares(int n) {
    SquareSet set;
    set.images = torch::rand({n, 1, 32, 32}) * 0.5;
    set.labels = torch::zeros({n, 1});
    const auto positive = torch::randint(0, 2, {n});
    const auto pos = torch::randint(0, 32 - 8 + 1, {n, 2});
    for (int i = 0; i < n; ++i) {
        if (positive[i].item<int64_t>() == 0) {
            set.squares.emplace_back();
            continue;
        }
        const int y = static_cast<int>(pos[i][0].item<int64_t>()), x = static_cast<int>(pos[i][1].item<int64_t>());
        set.images[i][0].slice(0, y, y + 8).slice(1, x, x + 8).fill_(1.0);
        set.labels[i][0] = 1.0;
        set.squares.emplace_back(x, y, 8, 8);
    }
    return set;
}

}  // namespace

TEST(GradCam, ExactMapForIdentityFeatures) {
    auto model = std::make_shared<IdentityImpl>(2.0f);
    auto img = torch::zeros({6, 8});
    img[1][2] = 4.0;
    img[3][5] = 2.0;
    img[4][1] = -3.0;
    const cv::Mat cam = grad_cam(*model, img.view({1, 1, 6, 8}), 0);
    ASSERT_EQ(cam.type(), CV_32FC1);
    ASSERT_EQ(cam.size(), cv::Size(8, 6));
    const cv::Mat expected = to_mat(torch::relu(img) / 4.0);
    EXPECT_EQ(cv::norm(cam, expected, cv::NORM_INF), 0.0);

    // A negative weight flips the evidence: only the negative pixel remains.
    auto negative = std::make_shared<IdentityImpl>(-1.0f);
    const cv::Mat flipped = grad_cam(*negative, img.view({1, 1, 6, 8}), 0);
    EXPECT_FLOAT_EQ(flipped.at<float>(4, 1), 1.0f);
    EXPECT_EQ(cv::countNonZero(flipped), 1);

    // No positive evidence anywhere: all zeros (not NaN).
    const cv::Mat none = grad_cam(*model, -torch::ones({1, 1, 6, 8}), 0);
    EXPECT_EQ(cv::countNonZero(none), 0);
}

TEST(GradCam, LeavesNoGradStateAndWorksUnderNoGrad) {
    auto model = std::make_shared<IdentityImpl>(2.0f);
    model->train();
    {
        torch::NoGradGuard no_grad;  // the caller's guard must not break it
        const cv::Mat cam = grad_cam(*model, torch::rand({1, 1, 5, 5}), 0);
        EXPECT_EQ(cam.size(), cv::Size(5, 5));
    }
    EXPECT_TRUE(model->is_training());  // mode untouched
    for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
    EXPECT_TRUE(torch::GradMode::is_enabled());

    ModelConfig c;
    c.name = "cnn-simple";
    auto cnn = create_model(c);
    cnn->eval();
    const auto x = torch::rand({1, 1, 40, 56});
    const cv::Mat a = grad_cam(*cnn, x, 0), b = grad_cam(*cnn, x, 0);
    EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0.0);  // deterministic in eval mode
    for (const auto& p : cnn->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(GradCam, RejectsBadArguments) {
    ModelConfig c;
    c.name = "cnn-simple";
    c.num_outputs = 2;
    auto model = create_model(c);
    EXPECT_THROW(grad_cam(*model, torch::rand({2, 1, 32, 32}), 0), UsageError);  // batch of 2
    EXPECT_THROW(grad_cam(*model, torch::rand({1, 32, 32}), 0), UsageError);
    EXPECT_THROW(grad_cam(*model, torch::Tensor(), 0), UsageError);
    EXPECT_THROW(grad_cam(*model, torch::rand({1, 1, 32, 32}), 2), UsageError);
    EXPECT_THROW(grad_cam(*model, torch::rand({1, 1, 32, 32}), -1), UsageError);
    EXPECT_NO_THROW(grad_cam(*model, torch::rand({1, 1, 32, 32}), 1));
}

// Trains cnn-simple to detect a bright square, then checks that the Grad-CAM peak lies in it.
TEST(GradCam, PeakFallsInsideTheSquareAfterTraining) {
    torch::manual_seed(2024);
    ModelConfig c;
    c.name = "cnn-simple";
    c.dropout = 0.0;
    auto model = create_model(c);
    torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(3e-3));
    const SquareSet train = make_squares(512);
    model->train();
    for (int epoch = 0; epoch < 6; ++epoch) {
        const auto order = torch::randperm(512);
        for (int b = 0; b < 512; b += 32) {
            const auto idx = order.slice(0, b, b + 32);
            opt.zero_grad();
            const auto loss = torch::binary_cross_entropy_with_logits(model->forward(train.images.index_select(0, idx)),
                                                                      train.labels.index_select(0, idx));
            loss.backward();
            opt.step();
        }
    }
    model->eval();
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();

    const SquareSet test = make_squares(100);
    {
        torch::NoGradGuard no_grad;
        const auto predicted = (model->forward(test.images) > 0).to(torch::kFloat32);
        const double accuracy = (predicted == test.labels).to(torch::kFloat32).mean().item<double>();
        RecordProperty("accuracy", std::to_string(accuracy));
        ASSERT_GE(accuracy, 0.95);
    }

    int positives = 0, inside = 0;
    for (int i = 0; i < 100; ++i) {
        if (test.squares[i].empty()) continue;
        ++positives;
        const cv::Mat cam = grad_cam(*model, test.images.slice(0, i, i + 1), 0);
        ASSERT_EQ(cam.type(), CV_32FC1);
        ASSERT_EQ(cam.size(), cv::Size(32, 32));
        double lo = 0, hi = 0;
        cv::Point peak;
        cv::minMaxLoc(cam, &lo, &hi, nullptr, &peak);
        EXPECT_GE(lo, 0.0);
        EXPECT_FLOAT_EQ(static_cast<float>(hi), 1.0f);
        if (test.squares[i].contains(peak)) ++inside;
    }
    for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
    RecordProperty("peaks_inside", std::to_string(inside) + "/" + std::to_string(positives));
    std::printf("accuracy ok; Grad-CAM peak inside the square for %d of %d positives\n", inside, positives);
    ASSERT_GT(positives, 30);
    EXPECT_GE(inside, 0.7 * positives);
}

// Segmentation ensembles: the SegPredictor averages its models' class probabilities before deciding
// the labels, takes the largest post-processing volume, and refuses models that do not fit together.
// The models here are untrained U-Nets whose weights are zero but for the head's bias, so each one
// outputs the same, known probabilities at every pixel.
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <cmath>

#include "hemoscan/error.hpp"
#include "hemoscan/models/seg_registry.hpp"
#include "hemoscan/models/segmenter.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/infer/seg_predictor.hpp"
#include "support/test_util.hpp"
#include "infer/seg_detail.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

struct ConstantModel {
    double p_background = 0.5;  // P(background) everywhere; the rest goes to class 1
    std::vector<std::string> classes{"background", "bleed"};
    std::string window = "brain";
    int size = 32;
    double min_component_ml = -1;  // < 0: no "postprocess" in the file
};

// A U-Net whose output is the head's bias at every pixel: every other parameter is zero, so the
// features reaching the head are zero (BatchNorm's running statistics are 0 and 1: zero in, zero out).
fs::path write_constant_model(const fs::path& path, const ConstantModel& c) {
    PreprocessOptions pre;
    if (c.window == "rgb") pre.windows = {window_brain(), window_subdural(), window_bone()};
    pre.resize.width = pre.resize.height = c.size;
    pre.resize.keep_aspect = true;
    SegModelConfig cfg;
    cfg.in_channels = pre.channels();
    cfg.num_classes = static_cast<int>(c.classes.size());
    cfg.depth = 2;
    cfg.base_width = 4;
    auto model = create_segmenter(cfg);
    {
        torch::NoGradGuard no_grad;
        for (auto& p : model->parameters()) p.zero_();
        torch::Tensor bias;
        for (auto& item : model->named_parameters()) {
            if (item.key() == "head.bias") bias = item.value();
        }
        EXPECT_TRUE(bias.defined()) << "no head.bias in the U-Net";
        // Logits log(p): softmax gives back p (class 1 takes the rest; any further class ~0).
        bias.fill_(std::log(1e-6));
        bias[0] = std::log(c.p_background);
        bias[1] = std::log(1.0 - c.p_background);
    }
    std::vector<int> bleed;
    for (int k = 1; k < static_cast<int>(c.classes.size()); ++k) bleed.push_back(k);
    nlohmann::json meta = {{"task", "segment"},
                           {"class_names", c.classes},
                           {"bleed_classes", bleed},
                           {"preprocess", preprocess_to_json(pre, c.window, "ct")},
                           {"tta", "hflip"},
                           {"context", 0}};
    if (c.min_component_ml >= 0) meta["postprocess"] = {{"min_component_ml", c.min_component_ml}};
    model->eval();
    save_segmenter(path, *model, meta);
    return path;
}

// Air with a 30 HU head disc, 4 slices of 40 x 40, 1 mm pixels, 2 mm slices.
Volume head_volume() {
    Volume v;
    v.geometry.spacing = {1.0, 1.0, 2.0};
    for (int k = 0; k < 4; ++k) {
        cv::Mat s(40, 40, CV_32F, cv::Scalar(-1000));
        cv::circle(s, cv::Point(20, 20), 15, cv::Scalar(30), -1);
        v.slices.push_back(s);
    }
    return v;
}

int foreground(const SegmentationResult& r) {
    int n = 0;
    for (const cv::Mat& s : r.labels.slices) n += cv::countNonZero(s);
    return n;
}

constexpr int kVoxels = 4 * 40 * 40;

}  // namespace

TEST(SegEnsemble, AveragesProbabilitiesBeforeDeciding) {
    test::TempDir d;
    const fs::path fg30 = write_constant_model(d / "a.pt", {0.30});  // P(bg) 0.30: foreground alone
    const fs::path bg80 = write_constant_model(d / "b.pt", {0.80});  // 0.80: background alone
    const fs::path bg55 = write_constant_model(d / "c.pt", {0.55});  // 0.55: background alone
    const Volume v = head_volume();

    EXPECT_EQ(foreground(SegPredictor(fg30, 1).segment(v)), kVoxels);
    EXPECT_EQ(foreground(SegPredictor(bg80, 1).segment(v)), 0);
    EXPECT_EQ(foreground(SegPredictor(bg55, 1).segment(v)), 0);
    // Mean P(bg) (0.30 + 0.80) / 2 = 0.55 -> background; (0.30 + 0.55) / 2 = 0.425 -> foreground, although
    // one of the two alone says background: the decision is on the average, not a vote or the first model.
    SegPredictor ab({fg30, bg80}, 1);
    EXPECT_EQ(ab.models(), 2u);
    EXPECT_EQ(foreground(ab.segment(v)), 0);
    SegPredictor ac({fg30, bg55}, 1);
    const SegmentationResult r = ac.segment(v);
    EXPECT_EQ(foreground(r), kVoxels);
    EXPECT_NEAR(r.bleed_volume_ml, kVoxels * 2.0 / 1000.0, 1e-9);  // 1 x 1 x 2 mm voxels
    EXPECT_EQ(SegPredictor({bg55, fg30}, 1).segment(v).labels.slices[2].at<uchar>(5, 5), 1);  // order-free
    // Three models: (0.30 + 0.80 + 0.55) / 3 = 0.55 -> background.
    EXPECT_EQ(foreground(SegPredictor({fg30, bg80, bg55}, 1).segment(v)), 0);

    // Models with other windows (one channel vs three) but the same output grid can join.
    const fs::path rgb = write_constant_model(d / "rgb.pt", {0.55, {"background", "bleed"}, "rgb"});
    EXPECT_EQ(foreground(SegPredictor({fg30, rgb}, 1).segment(v)), kVoxels);
    EXPECT_TRUE(SegPredictor({fg30, rgb}, 1).meta().contains("ensemble"));
    EXPECT_FALSE(SegPredictor(fg30, 1).meta().contains("ensemble"));
}

TEST(SegEnsemble, TakesTheLargestPostProcessingVolume) {
    test::TempDir d;
    ConstantModel a{0.3}, b{0.3}, none{0.3};
    a.min_component_ml = 0.5;
    b.min_component_ml = 1.0;
    const fs::path pa = write_constant_model(d / "a.pt", a), pb = write_constant_model(d / "b.pt", b),
                   pn = write_constant_model(d / "n.pt", none);
    EXPECT_DOUBLE_EQ(SegPredictor(pa, 1).min_component_ml(), 0.5);
    EXPECT_DOUBLE_EQ(SegPredictor({pa, pb}, 1).min_component_ml(), 1.0);
    EXPECT_DOUBLE_EQ(SegPredictor({pb, pa}, 1).min_component_ml(), 1.0);
    EXPECT_DOUBLE_EQ(SegPredictor({pn, pa}, 1).min_component_ml(), 0.5);
    // The whole head (12.8 mL, one component) survives 1 mL and goes under a 13 mL override.
    SegPredictor ens({pa, pb}, 1);
    EXPECT_EQ(foreground(ens.segment(head_volume())), kVoxels);
    ens.set_min_component_ml(13);
    EXPECT_EQ(foreground(ens.segment(head_volume())), 0);
}

TEST(SegEnsemble, RefusesModelsThatDoNotFit) {
    test::TempDir d;
    const fs::path base = write_constant_model(d / "base.pt", {0.5});
    const fs::path classes =
        write_constant_model(d / "classes.pt", {0.5, {"background", "epidural", "subdural"}});
    ConstantModel small{0.5};
    small.size = 16;
    const fs::path size16 = write_constant_model(d / "size16.pt", small);

    EXPECT_THROW(SegPredictor(std::vector<fs::path>{}, 1), UsageError);
    test::expect_input_error([&] { SegPredictor({base, classes}, 1); },
                             {(d / "classes.pt").string(), "other classes", "epidural"});
    test::expect_input_error([&] { SegPredictor({base, size16}, 1); },
                             {(d / "size16.pt").string(), "input size"});
    test::expect_input_error([&] { SegPredictor({base, d / "missing.pt"}, 1); }, {"missing.pt"});
}

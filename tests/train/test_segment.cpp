// Segmentation end to end in the library: a small U-Net learns bright blobs on tiny synthetic volumes;
// known volumes measure right in mL; predictions come back in the input's own geometry (tilted,
// anisotropic DICOM series and NIfTI); resume; errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <opencv2/imgproc.hpp>
#include <random>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/metrics/segmentation.hpp"
#include "hemoscan/models/pretrained.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/registry.hpp"
#include "hemoscan/models/segmenter.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/evaluate/segmentation.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/train/segment.hpp"
#include "hemoscan/train/trainer.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"
#include "train/frozen_options.hpp"
#include "infer/seg_detail.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

// Air (-1000 HU) with a noisy head disc (30 HU); `box` (x, y, w, h on slices k0..k1) at 75 HU, label 1.
struct Lesion {
    cv::Rect box;
    int k0 = 0, k1 = -1;
    bool ellipse = true;
};

void draw_case(int rows, int cols, int depth, const std::vector<Lesion>& lesions, unsigned seed, Volume& v,
               std::vector<cv::Mat>& labels) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> noise(0.f, 4.f);
    v.slices.clear();
    labels.clear();
    for (int k = 0; k < depth; ++k) {
        cv::Mat s(rows, cols, CV_32F, cv::Scalar(-1000));
        cv::ellipse(s, cv::Point(cols / 2, rows / 2), cv::Size(cols * 2 / 5, rows * 2 / 5), 0, 0, 360, cv::Scalar(30),
                    -1);
        cv::Mat l(rows, cols, CV_8U, cv::Scalar(0));
        for (const Lesion& les : lesions) {
            if (k < les.k0 || k > les.k1) continue;
            if (les.ellipse) {
                const cv::Point c(les.box.x + les.box.width / 2, les.box.y + les.box.height / 2);
                const cv::Size ax(les.box.width / 2, les.box.height / 2);
                cv::ellipse(s, c, ax, 0, 0, 360, cv::Scalar(75), -1);
                cv::ellipse(l, c, ax, 0, 0, 360, cv::Scalar(1), -1);
            } else {
                s(les.box).setTo(75);
                l(les.box).setTo(1);
            }
        }
        for (int y = 0; y < rows; ++y) {
            for (int x = 0; x < cols; ++x) {
                // Whole HU, as NIfTI (int16) and DICOM store them: every reader sees the same values.
                if (s.at<float>(y, x) > -500) s.at<float>(y, x) = std::round(s.at<float>(y, x) + noise(rng));
            }
        }
        v.slices.push_back(s);
        labels.push_back(l);
    }
}

Geometry axial(double px = 0.8, double slice = 2.5) {
    Geometry g;
    g.spacing = {px, px, slice};
    return g;
}

// n cases of 6 slices in nnU-Net form, 40 x 40, 48 x 36 or 36 x 48 pixels (round and elongated
// heads); three of four with one blob over 2-3 slices.
void write_blob_cases(const fs::path& root, int n, unsigned seed) {
    test::write_text(
        root / "dataset.json",
        R"({"channel_names": {"0": "CT"}, "labels": {"background": 0, "bleed": 1}, "file_ending": ".nii.gz"})");
    std::mt19937 rng(seed);
    for (int i = 0; i < n; ++i) {
        const int rows = i % 3 == 0 ? 40 : i % 3 == 1 ? 48 : 36, cols = i % 3 == 0 ? 40 : i % 3 == 1 ? 36 : 48;
        std::vector<Lesion> lesions;
        if (i % 4 != 3) {
            const int r = 3 + static_cast<int>(rng() % 4);
            const int x = cols / 2 - 6 + static_cast<int>(rng() % 12), y = rows / 2 - 6 + static_cast<int>(rng() % 12);
            const int k0 = 1 + static_cast<int>(rng() % 3);
            lesions.push_back({cv::Rect(x - r, y - r, 2 * r, 2 * r), k0, k0 + 1 + static_cast<int>(rng() % 2), true});
        }
        Volume v;
        v.geometry = axial();
        std::vector<cv::Mat> labels;
        draw_case(rows, cols, 6, lesions, seed * 1000 + static_cast<unsigned>(i), v, labels);
        char id[16];
        std::snprintf(id, sizeof id, "c%02d", i);
        write_nifti(root / "imagesTr" / (std::string(id) + "_0000.nii.gz"), v);
        write_nifti_labels(root / "labelsTr" / (std::string(id) + ".nii.gz"), labels, v.geometry);
    }
}

TrainOptions small_seg_options(const fs::path& data, const fs::path& out) {
    TrainOptions o;
    o.task = "segment";
    o.data = data.string();
    o.out = out.string();
    o.model = "unet";
    o.depth = 2;
    o.width = 0.25;  // base width 8
    o.size = 32;
    o.epochs = 14;
    o.batch = 8;
    o.lr = 3e-3;
    o.val_fraction = 0.25;
    o.threads = 1;  // one intra-op thread: spinning OpenMP threads crawl on a busy 2-core machine
    o.workers = 1;
    o.seed = 3;
    o.bleed_fraction = 0.5;
    return o;
}

// A rotation about a skew axis (Rodrigues) as Geometry direction, with anisotropic spacing.
Geometry tilted_geometry() {
    const double ax[3] = {0.3, -0.5, 0.8};
    const double n = std::sqrt(ax[0] * ax[0] + ax[1] * ax[1] + ax[2] * ax[2]);
    const double u[3] = {ax[0] / n, ax[1] / n, ax[2] / n};
    const double t = 23.0 * kPi / 180.0, c = std::cos(t), s = std::sin(t);
    double r[3][3];
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) r[i][j] = (i == j ? c : 0.0) + (1 - c) * u[i] * u[j];
    }
    r[0][1] -= s * u[2], r[0][2] += s * u[1];
    r[1][0] += s * u[2], r[1][2] -= s * u[0];
    r[2][0] -= s * u[1], r[2][1] += s * u[0];
    Geometry g;
    for (int col = 0; col < 3; ++col) {
        for (int row = 0; row < 3; ++row) g.direction[3 * col + row] = r[row][col];
    }
    g.spacing = {0.6, 0.9, 3.3};
    g.origin = {-21.7, 18.25, -40.1};
    return g;
}

void expect_same_geometry(const Geometry& a, const Geometry& b, double tol) {
    for (int i = 0; i < 3; ++i) {
        EXPECT_NEAR(a.spacing[i], b.spacing[i], tol) << "spacing " << i;
        EXPECT_NEAR(a.origin[i], b.origin[i], tol) << "origin " << i;
    }
    for (int i = 0; i < 9; ++i) EXPECT_NEAR(a.direction[i], b.direction[i], tol) << "direction " << i;
}

double dice_of(const std::vector<cv::Mat>& pred, const std::vector<cv::Mat>& truth) {
    return overlap(class_mask(pred, kAnyForeground), class_mask(truth, kAnyForeground)).dice();
}

}  // namespace

// One trained model shared by the tests below (training is the slow part).
class SegmentTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir();
        write_blob_cases(*dir_ / "data", 16, 11);
        result_ = new TrainResult(train_segmenter(small_seg_options(*dir_ / "data", *dir_ / "run")));
    }
    static void TearDownTestSuite() {
        delete result_;
        delete dir_;
    }
    static fs::path model() { return *dir_ / "run" / "model.pt"; }
    static test::TempDir* dir_;
    static TrainResult* result_;
};
test::TempDir* SegmentTest::dir_ = nullptr;
TrainResult* SegmentTest::result_ = nullptr;

TEST_F(SegmentTest, LearnsBlobsAndWritesRunFolder) {
    const TrainResult& r = *result_;
    ASSERT_TRUE(r.metrics.contains("dice")) << r.metrics.dump(2);
    EXPECT_GT(r.metrics["dice"]["any"].get<double>(), 0.8) << r.metrics.dump(2);
    EXPECT_GT(r.metrics["dice_positive"]["bleed"].get<double>(), 0.8) << r.metrics.dump(2);
    EXPECT_EQ(r.epochs_run, 14);
    EXPECT_EQ(r.val_indices.size(), 4u);
    EXPECT_EQ(r.metrics["n"], 4);
    const auto& ci = r.metrics["dice_any_ci95"];  // over the 4 validation cases
    EXPECT_LE(ci["per_case"][0].get<double>(), r.metrics["dice"]["any"].get<double>()) << ci.dump();
    EXPECT_GE(ci["per_case"][1].get<double>(), r.metrics["dice"]["any"].get<double>()) << ci.dump();
    EXPECT_LE(ci["pooled"][0].get<double>(), r.metrics["dice_pooled"]["any"].get<double>()) << ci.dump();
    EXPECT_GE(ci["pooled"][1].get<double>(), r.metrics["dice_pooled"]["any"].get<double>()) << ci.dump();
    EXPECT_EQ(ci["resamples"], 1000);
    for (const char* f :
         {"config.json", "model.pt", "log.csv", "metrics.json", "cases.csv", "split.csv", "curves.png", "state.json"}) {
        EXPECT_TRUE(fs::exists(*dir_ / "run" / f)) << f;
    }
    EXPECT_FALSE(fs::exists(*dir_ / "run" / "best.pt"));
    std::ifstream log(*dir_ / "run" / "log.csv");
    std::string header;
    std::getline(log, header);
    EXPECT_EQ(header, "epoch,lr,train_loss,val_loss,val_dice_any,val_dice_mean,seconds,train_slices_per_s,dice_bleed");
    const auto cfg = test::read_json(*dir_ / "run" / "config.json");
    EXPECT_EQ(cfg["task"], "segment");
    EXPECT_EQ(cfg["options"]["task"], "segment");
    EXPECT_EQ(load_run_options(*dir_ / "run").task, "segment");

    SegPredictor p(model(), 1);
    // Post-processing chosen on the validation cases: one of the candidates, never worse than none.
    const auto& post = p.meta()["postprocess"];
    EXPECT_EQ(post["chosen_on"], "validation");
    EXPECT_EQ(post["candidates"].size(), 10u);
    EXPECT_GE(post["dice"].get<double>(), post["dice_without"].get<double>());
    EXPECT_DOUBLE_EQ(post["dice_without"].get<double>(), post["candidates"]["0"].get<double>());
    EXPECT_DOUBLE_EQ(p.min_component_ml(), post["min_component_ml"].get<double>());
    EXPECT_EQ(test::read_json(*dir_ / "run" / "metrics.json")["n"], 4);
    EXPECT_EQ(p.class_names(), (std::vector<std::string>{"background", "bleed"}));
    EXPECT_EQ(p.bleed_classes(), std::vector<int>{1});
    EXPECT_EQ(p.meta()["task"], "segment");
    EXPECT_EQ(p.meta()["preprocess"]["size"], 32);
    // A second train into the same folder is refused.
    EXPECT_THROW(train_segmenter(small_seg_options(*dir_ / "data", *dir_ / "run")), UsageError);
}

// --init: a run that starts from the trained model and cannot move its weights (learning rate 1e-12)
// validates like that model; the same run without --init does not. Another width is refused.
TEST_F(SegmentTest, InitStartsFromAnotherRun) {
    using test::frozen;
    TrainOptions o = frozen(small_seg_options(*dir_ / "data", *dir_ / "init"));
    o.init = model().string();
    const TrainResult r = train_segmenter(o);
    const double trained = result_->metrics["dice_positive"]["bleed"].get<double>();
    EXPECT_NEAR(r.metrics["dice_positive"]["bleed"].get<double>(), trained, 0.02) << r.metrics.dump(2);
    const auto info = test::read_json(*dir_ / "init" / "init.json");
    EXPECT_EQ(info["values_taken"], info["values"]);
    EXPECT_EQ(SegPredictor(r.model_path, 1).meta()["init"]["file"], o.init);

    const TrainResult fresh = train_segmenter(frozen(small_seg_options(*dir_ / "data", *dir_ / "fresh")));
    EXPECT_LT(fresh.metrics["dice_positive"]["bleed"].get<double>(), trained - 0.3) << fresh.metrics.dump(2);

    TrainOptions wider = frozen(small_seg_options(*dir_ / "data", *dir_ / "wider"));
    wider.width = 0.5;
    wider.init = model().string();
    EXPECT_THROW(train_segmenter(wider), UsageError);
}

// A 10 x 10 pixel x 3 slice box at 0.8 x 0.8 x 2.5 mm is 300 voxels of 1.6 mm^3 = 0.48 mL.
TEST_F(SegmentTest, KnownVolumeInMillilitres) {
    Volume v;
    v.geometry = axial(0.8, 2.5);
    std::vector<cv::Mat> labels;
    draw_case(40, 40, 6, {{cv::Rect(14, 12, 10, 10), 2, 4, false}}, 5, v, labels);
    EXPECT_NEAR(volume_ml(labels, v.geometry.spacing), 0.48, 1e-12);

    SegPredictor p(model(), 1);
    const SegmentationResult r = p.segment(v);
    ASSERT_EQ(r.labels.depth(), 6);
    EXPECT_EQ(r.labels.slices[0].size(), cv::Size(40, 40));
    EXPECT_NEAR(r.bleed_volume_ml, 0.48, 0.48 * 0.2);
    EXPECT_DOUBLE_EQ(r.volume_ml[1], r.bleed_volume_ml);
    EXPECT_GT(dice_of(r.labels.slices, labels), 0.8);

    // Post-processing: a minimum component volume above the whole predicted volume removes every
    // component; 0 turns it off.
    SegPredictor strict(model(), 1);
    strict.set_min_component_ml(r.bleed_volume_ml + 1e-6);
    EXPECT_DOUBLE_EQ(strict.segment(v).bleed_volume_ml, 0.0);
    strict.set_min_component_ml(0);
    EXPECT_GE(strict.segment(v).bleed_volume_ml, r.bleed_volume_ml);
    EXPECT_THROW(strict.set_min_component_ml(-1), UsageError);

    // The same case through evaluate: the true volume is exact, the error is |predicted - true|.
    test::TempDir d;
    test::write_text(d / "ds" / "dataset.json",
                     R"({"channel_names": {"0": "CT"}, "labels": {"background": 0, "bleed": 1}})");
    write_nifti(d / "ds" / "imagesTr" / "box_0000.nii.gz", v);
    write_nifti_labels(d / "ds" / "labelsTr" / "box.nii.gz", labels, v.geometry);
    const SegDataset ds = open_seg_dataset(d / "ds");
    const nlohmann::json m = evaluate_segmentation(p, ds, d / "eval");
    const auto& c = m["cases"][0];
    // NIfTI stores the spacing as float32: 0.8 mm comes back as 0.800000011920929 (a 1e-7 relative error).
    EXPECT_NEAR(c["volume_true_ml"].get<double>(), 0.48, 1e-6);
    EXPECT_NEAR(c["volume_ml"].get<double>(), r.bleed_volume_ml, 1e-6);  // NIfTI keeps the HU: same prediction
    EXPECT_NEAR(m["volume_abs_err_ml"]["any"].get<double>(), std::abs(r.bleed_volume_ml - 0.48), 1e-6);
    EXPECT_NEAR(m["dice"]["any"].get<double>(), dice_of(r.labels.slices, labels), 1e-9);
    EXPECT_DOUBLE_EQ(m["dice"]["bleed"].get<double>(), m["dice"]["any"].get<double>());
    EXPECT_LT(m["hd95_mm"]["any"].get<double>(), 3.0);
    EXPECT_EQ(m["lesions"], 1);
    EXPECT_EQ(m["lesion_sensitivity"], 1.0);
    // One case: every bootstrap draw is that case, so each interval is its Dice.
    for (const char* key : {"per_case", "positive", "pooled"}) {
        EXPECT_NEAR(m["dice_any_ci95"][key][0].get<double>(), m["dice"]["any"].get<double>(), 1e-12) << key;
        EXPECT_NEAR(m["dice_any_ci95"][key][1].get<double>(), m["dice"]["any"].get<double>(), 1e-12) << key;
    }
    for (const char* key : {"dice", "dice_mean", "iou", "hd95_mm", "volume_abs_err_ml", "lesion_sensitivity"}) {
        EXPECT_TRUE(test::read_json(d / "eval" / "metrics.json").contains(key)) << key;
    }
    EXPECT_TRUE(fs::exists(d / "eval" / "cases.csv"));

    // An empty volume is refused; a dataset with other classes is refused, naming the dataset.
    EXPECT_THROW(p.segment(Volume{}), InputError);
    test::write_text(d / "ds" / "dataset.json",
                     R"({"channel_names": {"0": "CT"}, "labels": {"background": 0, "bleed": 1, "other": 2}})");
    test::expect_input_error([&] { evaluate_segmentation(p, open_seg_dataset(d / "ds"), d / "eval2"); },
                             {(d / "ds").string(), "bleed, other"});
}

// A tilted, anisotropic, non-square series: the label map comes back with the input's size and
// geometry (also through a NIfTI file), and the lesion is found where it is.
TEST_F(SegmentTest, OutputGeometryEqualsInputGeometry) {
    const Geometry g = tilted_geometry();
    Volume v;
    v.geometry = g;
    std::vector<cv::Mat> truth;
    // 48 rows x 36 columns of 0.6 x 0.9 mm pixels: non-square in pixels and in mm.
    draw_case(48, 36, 5, {{cv::Rect(9, 14, 9, 12), 1, 3, true}}, 9, v, truth);

    test::TempDir d;
    DicomWriteOptions o;
    o.study_uid = new_dicom_uid();
    o.series_uid = new_dicom_uid();
    o.orientation = {g.direction[0], g.direction[1], g.direction[2], g.direction[3], g.direction[4], g.direction[5]};
    o.pixel_spacing = {g.spacing[1], g.spacing[0]};
    o.slice_thickness = g.spacing[2];
    for (int k = 0; k < v.depth(); ++k) {
        o.sop_uid = new_dicom_uid();
        o.instance_number = 5 - k;  // instance numbers against position order: positions decide
        for (int i = 0; i < 3; ++i) o.position[i] = g.origin[i] + k * g.spacing[2] * g.direction[6 + i];
        write_dicom_ct(d / "series" / ("IM" + std::to_string(k) + ".dcm"), v.slices[static_cast<size_t>(k)], o);
    }
    write_nifti(d / "tilted.nii.gz", v);

    SegPredictor p(model(), 1);
    for (const fs::path& input : {d / "series", d / "tilted.nii.gz"}) {
        const Volume in = read_study_inputs(input, ModalityPolicy::CtOnly, SeriesChoice::Largest).front().volume;
        expect_same_geometry(in.geometry, g, 1e-4);
        const SegmentationResult r = p.segment(in);
        ASSERT_EQ(r.labels.depth(), 5) << input;
        EXPECT_EQ(r.labels.slices[0].size(), cv::Size(36, 48)) << input;
        expect_same_geometry(r.labels.geometry, in.geometry, 0);
        const fs::path out = d / (input.filename().string() + "_seg.nii.gz");
        write_nifti_labels(out, r.labels.slices, r.labels.geometry);
        const LabelVolume back = read_nifti_labels(out);
        ASSERT_EQ(back.depth(), 5);
        EXPECT_EQ(back.slices[0].size(), cv::Size(36, 48));
        expect_same_geometry(back.geometry, in.geometry, 1e-4);
        EXPECT_GT(dice_of(back.slices, truth), 0.7) << input;
        // Nothing on the slices without the lesion.
        EXPECT_EQ(cv::countNonZero(back.slices[0]), 0) << input << " at " << cv::boundingRect(back.slices[0]);
        EXPECT_EQ(cv::countNonZero(back.slices[4]), 0) << input << " at " << cv::boundingRect(back.slices[4]);
    }
    test::expect_input_error([&] { read_study_inputs(d / "missing.nii.gz", ModalityPolicy::CtOnly); }, {(d / "missing.nii.gz").string()});
    test::write_text(d / "notes.txt", "hello");
    test::expect_input_error([&] { read_study_inputs(d / "notes.txt", ModalityPolicy::CtOnly); }, {(d / "notes.txt").string()});
}

// Killed after the first epoch, resumed: same number of epochs, the first epoch's history kept.
TEST(Segment, ResumeAfterInterruption) {
    test::TempDir d;
    write_blob_cases(d / "data", 6, 2);
    TrainOptions o = small_seg_options(d / "data", d / "run");
    o.epochs = 3;
    o.val_fraction = 0.34;
    TrainCallbacks cb;
    cb.epoch_end = [](int epoch, const nlohmann::json&) {
        if (epoch == 0) throw std::runtime_error("simulated crash after epoch 1");
    };
    EXPECT_THROW(train_segmenter(o, cb), std::runtime_error);
    EXPECT_FALSE(fs::exists(d / "run" / "model.pt"));
    const auto state = nlohmann::json::parse(read_file(d / "run" / "state.json"));
    EXPECT_EQ(state["epoch_done"], 0);

    const TrainOptions resumed = load_run_options(d / "run");
    const TrainResult r = train_segmenter(resumed, {}, true);
    EXPECT_EQ(r.epochs_run, 3);
    const auto after = nlohmann::json::parse(read_file(d / "run" / "state.json"));
    EXPECT_TRUE(after["finished"].get<bool>());
    ASSERT_EQ(after["history"].size(), 3u);
    EXPECT_EQ(after["history"][0]["train_loss"], state["history"][0]["train_loss"]);
    EXPECT_TRUE(fs::exists(d / "run" / "model.pt"));
    EXPECT_THROW(train_segmenter(resumed, {}, true), UsageError);
}

TEST(Segment, BadOptions) {
    test::TempDir d;
    write_blob_cases(d / "data", 4, 1);
    TrainOptions o = small_seg_options(d / "data", d / "run");
    o.model = "cnn";
    test::expect_usage_error([&] { train_segmenter(o); }, {"unet"});
    o = small_seg_options(d / "data", d / "run");
    o.size = 34;  // not divisible by 2^2
    EXPECT_THROW(train_segmenter(o), UsageError);
    o = small_seg_options(d / "data", d / "run");
    o.loss = "hinge";
    EXPECT_THROW(train_segmenter(o), UsageError);
    o = small_seg_options(d / "data", d / "run");
    o.folds = 3;
    EXPECT_THROW(train_segmenter(o), UsageError);
    // Classification-only options are refused rather than silently ignored.
    o = small_seg_options(d / "data", d / "run");
    o.ema_epochs = 1;
    test::expect_usage_error([&] { train_segmenter(o); }, {"`ema_epochs`", "classification"});
    o = small_seg_options(d / "data", d / "run");
    o.epochs = 0;  // the checks both trainers share
    test::expect_usage_error([&] { train_segmenter(o); }, {"`epochs`"});
    EXPECT_FALSE(fs::exists(d / "run"));
    o = small_seg_options(d / "nothing", d / "run");
    EXPECT_THROW(train_segmenter(o), InputError);
    EXPECT_FALSE(fs::exists(d / "run"));
}

// `pretrained` for segmentation (issue 27): torchvision-style resnet18 weights fill the encoder of a
// resnet18-unet; with the encoder frozen throughout, the saved model still holds exactly those weights
// (the RGB first conv summed for one channel) while the decoder trained. Models without an encoder,
// and sizes the ResNet cannot halve five times, are refused before anything is written.
TEST(Segment, PretrainedResNetEncoder) {
    test::TempDir d;
    write_blob_cases(d / "data", 8, 5);
    torch::manual_seed(9);
    ModelConfig rc;
    rc.name = "resnet18";
    rc.in_channels = 3;
    rc.num_outputs = 1000;
    auto resnet = create_model(rc);
    const StateDict sd = state_dict_of(*resnet);
    write_safetensors(d / "resnet18.safetensors", sd);

    TrainOptions o = small_seg_options(d / "data", d / "run");
    o.model = "resnet18-unet";
    o.epochs = 2;
    o.freeze_epochs = 2;
    o.pretrained = (d / "resnet18.safetensors").string();
    train_segmenter(o);
    const auto info = test::read_json(d / "run" / "init.json");
    EXPECT_EQ(info["adapted"], nlohmann::json({"conv1.weight"}));
    EXPECT_EQ(info["unused"], nlohmann::json({"fc.bias", "fc.weight"}));
    EXPECT_TRUE(info["fresh"].empty());
    const LoadedSegmenter seg = load_segmenter(d / "run" / "model.pt");
    int encoder = 0;
    for (const auto& p : seg.model->encoder()->named_parameters()) {
        const torch::Tensor& want = p.key() == "conv1.weight" ? sd.at(p.key()).sum(1, true) : sd.at(p.key());
        EXPECT_TRUE(torch::allclose(p.value(), want, 0, 1e-6)) << p.key();
        ++encoder;
    }
    for (const auto& b : seg.model->encoder()->named_buffers()) {
        if (b.key().find("running_") == std::string::npos) continue;
        EXPECT_TRUE(torch::equal(b.value(), sd.at(b.key()))) << b.key();
    }
    EXPECT_EQ(encoder, 60);  // resnet18 has 62 parameter tensors, fc.weight and fc.bias among them
    // The decoder trained.
    torch::manual_seed(o.seed);
    SegModelConfig fresh_config = seg.model->config();
    auto fresh = create_segmenter(fresh_config);
    EXPECT_FALSE(torch::equal(seg.model->named_parameters()["head.weight"], fresh->named_parameters()["head.weight"]));

    TrainOptions bad = small_seg_options(d / "data", d / "bad");
    bad.pretrained = o.pretrained;  // unet: nothing to load into
    test::expect_usage_error([&] { train_segmenter(bad); }, {"`pretrained`", "resnet34-unet", "unet"});
    bad = small_seg_options(d / "data", d / "bad");
    bad.model = "resnet34-unet";
    bad.size = 48;
    test::expect_usage_error([&] { train_segmenter(bad); }, {"`size` 48", "divisible by 32"});
    bad = small_seg_options(d / "data", d / "bad");
    bad.freeze_epochs = 1;  // unet has no encoder to freeze
    test::expect_usage_error([&] { train_segmenter(bad); }, {"freeze_epochs", "head and backbone"});
    EXPECT_FALSE(fs::exists(d / "bad" / "model.pt"));
}

// 2.5D: slice k's input holds slices k-1, k, k+1 (the end slices repeated), in that order.
TEST(SegContext, NeighbouringSlicesBecomeChannels) {
    std::vector<seg_detail::PreparedSlice> slices(3);
    for (int k = 0; k < 3; ++k) {
        slices[static_cast<size_t>(k)].sample.image = cv::Mat(2, 3, CV_32FC1, cv::Scalar(k + 1));
        slices[static_cast<size_t>(k)].sample.transform.crop = cv::Rect(0, 0, 3, 2);
    }
    auto same = slices;
    seg_detail::add_slice_context(same, 0);
    EXPECT_EQ(same[1].sample.image.channels(), 1);
    // Training stacks one slice at a time from the unstacked volume: the same input as the whole pass.
    std::vector<cv::Mat> one_at_a_time;
    for (size_t k = 0; k < 3; ++k) one_at_a_time.push_back(seg_detail::context_image(slices, k, 1));
    EXPECT_EQ(slices[1].sample.image.channels(), 1);  // the volume itself is left as it was
    seg_detail::add_slice_context(slices, 1);
    for (size_t k = 0; k < 3; ++k) {
        ASSERT_EQ(one_at_a_time[k].channels(), 3);
        EXPECT_EQ(cv::norm(one_at_a_time[k], slices[k].sample.image, cv::NORM_INF), 0.0) << "slice " << k;
    }
    const float expected[3][3] = {{1, 1, 2}, {1, 2, 3}, {2, 3, 3}};
    for (int k = 0; k < 3; ++k) {
        const cv::Mat& img = slices[static_cast<size_t>(k)].sample.image;
        ASSERT_EQ(img.channels(), 3);
        ASSERT_EQ(img.size(), cv::Size(3, 2));
        const cv::Vec3f px = img.at<cv::Vec3f>(1, 2);
        for (int c = 0; c < 3; ++c) EXPECT_EQ(px[c], expected[k][c]) << "slice " << k << " channel " << c;
    }
    // Two slices more on each side than the volume has: the ends repeat.
    std::vector<seg_detail::PreparedSlice> two(2);
    for (int k = 0; k < 2; ++k) two[static_cast<size_t>(k)].sample.image = cv::Mat(1, 1, CV_32FC1, cv::Scalar(k + 1));
    seg_detail::add_slice_context(two, 2);
    const cv::Mat& first = two[0].sample.image;
    ASSERT_EQ(first.channels(), 5);
    const float* v = first.ptr<float>(0);
    EXPECT_EQ(std::vector<float>(v, v + 5), (std::vector<float>{1, 1, 1, 2, 2}));
    // Slices cropped differently (per-slice head boxes) do not line up: refused.
    std::vector<seg_detail::PreparedSlice> cropped(2);
    for (int k = 0; k < 2; ++k) {
        cropped[static_cast<size_t>(k)].sample.image = cv::Mat(2, 2, CV_32FC1, cv::Scalar(0));
        cropped[static_cast<size_t>(k)].sample.transform.crop = cv::Rect(k, 0, 2, 2);
    }
    EXPECT_THROW(seg_detail::add_slice_context(cropped, 1), UsageError);
    EXPECT_THROW(seg_detail::check_slice_context(cropped, 1), UsageError);
    EXPECT_NO_THROW(seg_detail::check_slice_context(cropped, 0));
}

// A 2.5D model (--context 1) trains on the blob cases, stores its context, and segments a volume
// with the lesion where it is; --context with a per-slice head crop is refused.
TEST(Segment, SliceContextModel) {
    test::TempDir d;
    write_blob_cases(d / "data", 16, 11);
    TrainOptions o = small_seg_options(d / "data", d / "run");
    o.context = 1;
    o.crop_head = false;
    o.epochs = 30;  // three times the input to sort out: on 12 tiny cases it needs more steps than 14 epochs
    const TrainResult r = train_segmenter(o);
    EXPECT_GT(r.metrics["dice_positive"]["bleed"].get<double>(), 0.8) << r.metrics.dump(2);
    SegPredictor p(r.model_path, 1);
    EXPECT_EQ(p.meta()["context"], 1);
    EXPECT_EQ(p.meta()["model"]["in_channels"], 3);
    EXPECT_EQ(load_run_options(d / "run").context, 1);
    Volume v;
    v.geometry = axial();
    std::vector<cv::Mat> truth;
    draw_case(40, 40, 6, {{cv::Rect(14, 15, 10, 10), 2, 3, true}}, 5, v, truth);
    const SegmentationResult seg = p.segment(v);
    ASSERT_EQ(seg.labels.depth(), 6);
    EXPECT_GT(dice_of(seg.labels.slices, truth), 0.7);
    EXPECT_EQ(cv::countNonZero(seg.labels.slices[0]), 0);
    EXPECT_EQ(cv::countNonZero(seg.labels.slices[5]), 0);

    TrainOptions cropped = small_seg_options(d / "data", d / "cropped");
    cropped.context = 1;
    cropped.crop_head = true;
    EXPECT_THROW(train_segmenter(cropped), UsageError);
    TrainOptions classify;
    classify.data = (d / "data").string();
    classify.out = (d / "classify").string();
    classify.context = 1;
    EXPECT_THROW(train_classifier(classify), InputError);  // an nnU-Net folder is no classification data set
}

// Foreground wherever P(background) < 0.5, then the most probable foreground class: a pixel whose
// probability is split between two subtypes is still a finding (a plain argmax would call it background).
TEST(SegLabels, ForegroundWhenBackgroundIsLessThanHalf) {
    const std::vector<std::array<float, 3>> pixels = {
        {0.40f, 0.35f, 0.25f},  // background most probable alone, but 0.60 is foreground: class 1
        {0.60f, 0.30f, 0.10f},  // background
        {0.20f, 0.30f, 0.50f},  // class 2
        {0.50f, 0.45f, 0.05f},  // exactly one half: background
    };
    std::vector<cv::Mat> planes(3);
    for (int k = 0; k < 3; ++k) {
        planes[static_cast<size_t>(k)] = cv::Mat(1, 4, CV_32FC1);
        for (int x = 0; x < 4; ++x)
            planes[static_cast<size_t>(k)].at<float>(0, x) = pixels[static_cast<size_t>(x)][static_cast<size_t>(k)];
    }
    seg_detail::PreparedSlice prepared;
    prepared.sample.transform = {cv::Size(4, 1), cv::Rect(0, 0, 4, 1), cv::Rect(0, 0, 4, 1), cv::Size(4, 1)};
    const cv::Mat labels = seg_detail::labels_to_source(planes, prepared);
    ASSERT_EQ(labels.size(), cv::Size(4, 1));
    EXPECT_EQ(labels.at<std::uint8_t>(0, 0), 1);
    EXPECT_EQ(labels.at<std::uint8_t>(0, 1), 0);
    EXPECT_EQ(labels.at<std::uint8_t>(0, 2), 2);
    EXPECT_EQ(labels.at<std::uint8_t>(0, 3), 0);
    EXPECT_THROW(seg_detail::labels_to_source({planes[0]}, prepared), UsageError);
}

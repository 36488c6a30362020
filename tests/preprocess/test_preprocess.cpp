#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "hemoscan/error.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

using namespace hemoscan;

namespace {

DicomSlice hu_slice(const cv::Mat& hu, const std::string& path = "case/slice.dcm") {
    DicomSlice s;
    s.pixels = hu;
    s.meta.path = path;
    s.meta.modality = "CT";
    s.meta.is_hu = true;
    s.meta.rows = hu.rows;
    s.meta.cols = hu.cols;
    return s;
}

PreprocessOptions options_at(int size, const std::string& windows, Normalization norm) {
    PreprocessOptions o;
    o.windows = parse_windows(windows);
    o.resize.width = size;
    o.resize.height = size;
    o.normalization = norm;
    return o;
}

}  // namespace

TEST(Preprocess, HuSliceToThreeWindows) {
    // Left half 30 HU (grey matter), right half -100 HU (fat).
    cv::Mat hu(128, 128, CV_32FC1, cv::Scalar(-100));
    hu.colRange(0, 64).setTo(30);
    const Sample s = preprocess(hu_slice(hu), options_at(64, "rgb", Normalization::None));
    ASSERT_EQ(s.image.type(), CV_32FC3);
    ASSERT_EQ(s.image.size(), cv::Size(64, 64));
    EXPECT_TRUE(s.mask.empty());
    // brain 0..80, subdural -20..180, bone -800..2000 HU.
    const cv::Vec3f left = s.image.at<cv::Vec3f>(32, 16), right = s.image.at<cv::Vec3f>(32, 48);
    EXPECT_FLOAT_EQ(left[0], 0.375f);
    EXPECT_FLOAT_EQ(left[1], 0.25f);
    EXPECT_FLOAT_EQ(left[2], 830.f / 2800.f);
    EXPECT_FLOAT_EQ(right[0], 0.f);
    EXPECT_FLOAT_EQ(right[1], 0.f);
    EXPECT_FLOAT_EQ(right[2], 0.25f);
    EXPECT_EQ(s.id, "slice");
    EXPECT_EQ(s.meta.path, "case/slice.dcm");
}

TEST(Preprocess, DefaultUnitRangeNormalisation) {
    cv::Mat hu(40, 40, CV_32FC1, cv::Scalar(10));
    hu.rowRange(0, 20).setTo(50);
    PreprocessOptions o = options_at(32, "brain", Normalization::UnitRange);
    o.median_kernel = 3;
    const Sample s = preprocess(hu_slice(hu), o);
    ASSERT_EQ(s.image.type(), CV_32FC1);
    double lo = 0, hi = 0;
    cv::minMaxLoc(s.image, &lo, &hi);
    EXPECT_FLOAT_EQ(static_cast<float>(lo), 0.f);
    EXPECT_FLOAT_EQ(static_cast<float>(hi), 1.f);
    EXPECT_FLOAT_EQ(s.image.at<float>(2, 2), 1.f);   // 50 HU, the brighter half
    EXPECT_FLOAT_EQ(s.image.at<float>(30, 2), 0.f);  // 10 HU
}

TEST(Preprocess, AlreadyWindowedImageIsUsedAsIs) {
    DicomSlice png;
    png.pixels = cv::Mat(40, 40, CV_32FC1, cv::Scalar(51));
    png.pixels.rowRange(20, 40).setTo(204);
    png.meta.path = "pngs/img_0001.png";
    png.meta.already_windowed = true;
    // Through the brain window 51 would become 0.6375 and 204 would clip to 1: neither may happen.
    const Sample s = preprocess(png, options_at(40, "rgb", Normalization::None));
    ASSERT_EQ(s.image.type(), CV_32FC3);
    for (int c = 0; c < 3; ++c) {
        EXPECT_FLOAT_EQ(s.image.at<cv::Vec3f>(5, 5)[c], 0.2f) << c;
        EXPECT_FLOAT_EQ(s.image.at<cv::Vec3f>(35, 5)[c], 0.8f) << c;
    }
    // One window: one channel. An 8-bit Mat works the same.
    png.pixels.convertTo(png.pixels, CV_8U);
    const Sample one = preprocess(png, options_at(40, "brain", Normalization::None));
    ASSERT_EQ(one.image.type(), CV_32FC1);
    EXPECT_FLOAT_EQ(one.image.at<float>(5, 5), 0.2f);
    EXPECT_FLOAT_EQ(one.image.at<float>(35, 5), 0.8f);
}

TEST(Preprocess, NonHuImageIsMinMaxScaled) {
    DicomSlice mr;
    mr.pixels = cv::Mat(16, 16, CV_32FC1, cv::Scalar(1000));
    mr.pixels.colRange(8, 16).setTo(3000);
    mr.meta.path = "mr.dcm";
    mr.meta.modality = "MR";
    const Sample s = preprocess(mr, options_at(16, "brain", Normalization::None));
    EXPECT_EQ(s.image.at<float>(3, 3), 0.f);
    EXPECT_EQ(s.image.at<float>(3, 12), 1.f);
}

TEST(Preprocess, CropKeepAspectAndMaskMoveTogether) {
    // 160 x 120 slice: air, a head (30 HU) with a bleed (70 HU, labelled), burnt-in text (1000 HU).
    cv::Mat hu(120, 160, CV_32FC1, cv::Scalar(-1000));
    cv::ellipse(hu, cv::Point(80, 64), cv::Size(50, 40), 0, 0, 360, cv::Scalar(30), cv::FILLED);
    cv::circle(hu, cv::Point(95, 60), 8, cv::Scalar(70), cv::FILLED);
    hu(cv::Rect(5, 5, 10, 12)).setTo(1000);
    cv::Mat mask(120, 160, CV_8UC1, cv::Scalar(0));
    cv::circle(mask, cv::Point(95, 60), 8, cv::Scalar(1), cv::FILLED);

    PreprocessOptions o = options_at(64, "brain", Normalization::None);
    o.crop_head = true;
    o.resize.keep_aspect = true;
    o.median_kernel = 3;
    const Sample s = preprocess(hu_slice(hu), o, mask);
    ASSERT_EQ(s.image.size(), cv::Size(64, 64));
    ASSERT_EQ(s.mask.size(), cv::Size(64, 64));
    ASSERT_EQ(s.mask.type(), CV_8UC1);

    // The text is gone: nothing reaches the brain window's top.
    double lo = 0, hi = 0;
    cv::minMaxLoc(s.image, &lo, &hi);
    EXPECT_LT(hi, 0.9);
    EXPECT_GT(hi, 0.85);  // the bleed, 70 HU = 0.875
    // The head fills the width after cropping (box 109 x 89 -> 64 x 52, 6 padding rows above).
    EXPECT_GT(s.image.at<float>(32, 5), 0.3f);
    EXPECT_EQ(s.image.at<float>(2, 32), 0.f);

    // The mask stays binary and sits on the bleed.
    std::set<int> values;
    for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 64; ++x) values.insert(s.mask.at<uchar>(y, x));
    EXPECT_EQ(values, (std::set<int>{0, 1}));
    EXPECT_GT(cv::mean(s.image, s.mask)[0], 0.8);
    cv::Mat near_mask;
    cv::dilate(s.mask, near_mask, cv::Mat());
    EXPECT_EQ(cv::countNonZero((s.image > 0.7f) & (near_mask == 0)), 0);
}

TEST(Preprocess, ErrorsNameTheFile) {
    try {
        preprocess(hu_slice(cv::Mat(), "broken/file.dcm"), PreprocessOptions{});
        FAIL();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("broken/file.dcm"), std::string::npos);
    }
    const cv::Mat hu(8, 8, CV_32FC1, cv::Scalar(0));
    try {
        preprocess(hu_slice(hu, "a/b.dcm"), PreprocessOptions{}, cv::Mat(4, 8, CV_8UC1, cv::Scalar(0)));
        FAIL();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("a/b.dcm"), std::string::npos);
    }
    PreprocessOptions none;
    none.windows.clear();
    EXPECT_THROW(preprocess(hu_slice(hu), none), UsageError);
    PreprocessOptions even;
    even.median_kernel = 4;
    EXPECT_THROW(preprocess(hu_slice(hu), even), UsageError);
}

// preprocess() says where the slice went: the head box of the source, scaled into the content
// rectangle of the model input (keep_aspect pads around it). A marked pixel lands where it says.
TEST(Preprocess, ReturnsItsSpatialTransform) {
    cv::Mat hu(60, 100, CV_32FC1, cv::Scalar(-1000));
    cv::rectangle(hu, cv::Rect(30, 10, 40, 40), cv::Scalar(40), -1);  // the head: 40 x 40 at (30, 10)
    PreprocessOptions o;
    o.crop_head = true;
    o.resize = ResizeOptions{32, 32, true, 0.f};
    o.normalization = Normalization::None;
    cv::Mat mark(60, 100, CV_8UC1, cv::Scalar(0));
    mark.at<uchar>(30, 50) = 1;  // the centre of the head
    const Sample s = preprocess(hu_slice(hu), o, mark);
    const SpatialTransform& t = s.transform;
    EXPECT_EQ(t.source, cv::Size(100, 60));
    EXPECT_EQ(t.crop, cv::Rect(26, 6, 48, 48));  // the head's box with a margin of 4
    EXPECT_EQ(t.content, cv::Rect(0, 0, 32, 32));
    EXPECT_EQ(t.output, cv::Size(32, 32));
    cv::Point at;
    cv::minMaxLoc(s.mask, nullptr, nullptr, nullptr, &at);
    const double sx = static_cast<double>(t.content.width) / t.crop.width;
    EXPECT_NEAR(at.x, t.content.x + (50 - t.crop.x + 0.5) * sx - 0.5, 1.0);
    EXPECT_NEAR(at.y, t.content.y + (30 - t.crop.y + 0.5) * sx - 0.5, 1.0);

    // Without a crop, a wide slice is padded above and below.
    o.crop_head = false;
    const Sample w = preprocess(hu_slice(hu), o);
    EXPECT_EQ(w.transform.crop, cv::Rect(0, 0, 100, 60));
    EXPECT_EQ(w.transform.content, resize_content(cv::Size(100, 60), o.resize));
    EXPECT_EQ(w.transform.content.width, 32);
    EXPECT_EQ(w.transform.content.y, (32 - w.transform.content.height) / 2);
}

// One JSON form of the preprocessing in model files: what is written reads back the same.
TEST(Preprocess, JsonCodecRoundTrip) {
    PreprocessOptions o;
    o.windows = parse_windows("rgb");
    o.resize = ResizeOptions{96, 96, true, 0.f};
    o.median_kernel = 3;
    o.normalization = Normalization::ZScore;
    o.crop_head = true;
    const nlohmann::json j = preprocess_to_json(o, "rgb", "ct");
    EXPECT_EQ(j["window_spec"], "rgb");
    EXPECT_EQ(j["modality"], "ct");
    EXPECT_EQ(j["normalization"], "zscore");
    const PreprocessOptions back = preprocess_from_json(j);
    ASSERT_EQ(back.windows.size(), 3u);
    EXPECT_EQ(back.windows[1].name, "subdural");
    EXPECT_DOUBLE_EQ(back.windows[2].level, o.windows[2].level);
    EXPECT_EQ(back.resize.width, 96);
    EXPECT_EQ(back.resize.height, 96);
    EXPECT_TRUE(back.resize.keep_aspect);
    EXPECT_EQ(back.median_kernel, 3);
    EXPECT_EQ(back.normalization, Normalization::ZScore);
    EXPECT_TRUE(back.crop_head);
    // Missing keys: the defaults; a wrong type names the key.
    const PreprocessOptions d = preprocess_from_json(nlohmann::json::object());
    EXPECT_EQ(d.windows.size(), 1u);
    EXPECT_EQ(d.resize.width, PreprocessOptions{}.resize.width);
    try {
        preprocess_from_json({{"size", "big"}});
        FAIL();
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("preprocess.size"), std::string::npos) << e.what();
    }
}

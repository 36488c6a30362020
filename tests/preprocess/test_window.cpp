#include <gtest/gtest.h>

#include <opencv2/core.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

cv::Mat row_of(const std::vector<float>& values) {
    return cv::Mat(1, static_cast<int>(values.size()), CV_32FC1, const_cast<float*>(values.data())).clone();
}

}  // namespace

TEST(Window, Presets) {
    EXPECT_EQ(window_brain().level, 40);
    EXPECT_EQ(window_brain().width, 80);
    EXPECT_EQ(window_subdural().level, 80);
    EXPECT_EQ(window_subdural().width, 200);
    EXPECT_EQ(window_bone().level, 600);
    EXPECT_EQ(window_bone().width, 2800);
}

TEST(Window, BrainWindowIsExactLinearMap) {
    // Brain 40/80 covers 0..80 HU.
    const cv::Mat hu = row_of({-1000, 0, 20, 40, 60, 80, 100, 1000});
    const cv::Mat v = apply_window(hu, window_brain());
    ASSERT_EQ(v.type(), CV_32FC1);
    ASSERT_EQ(v.size(), hu.size());
    const std::vector<float> expected{0.f, 0.f, 0.25f, 0.5f, 0.75f, 1.f, 1.f, 1.f};
    for (int i = 0; i < v.cols; ++i) EXPECT_EQ(v.at<float>(0, i), expected[static_cast<size_t>(i)]) << "at " << i;
}

TEST(Window, ToUint8RoundsHalfUp) {
    const cv::Mat v = apply_window(row_of({-1000, 0, 20, 40, 60, 80, 100, 1000}), window_brain());
    const cv::Mat g = to_uint8(v);
    ASSERT_EQ(g.type(), CV_8UC1);
    // 0.25 * 255 = 63.75 -> 64, 0.5 * 255 = 127.5 -> 128, 0.75 * 255 = 191.25 -> 191.
    const std::vector<int> expected{0, 0, 64, 128, 191, 255, 255, 255};
    for (int i = 0; i < g.cols; ++i) EXPECT_EQ(g.at<uchar>(0, i), expected[static_cast<size_t>(i)]) << "at " << i;
    // Out-of-range input is clamped, channels are kept.
    const cv::Mat three(2, 2, CV_32FC3, cv::Scalar(-0.5, 1.5, 0.5));
    const cv::Mat g3 = to_uint8(three);
    ASSERT_EQ(g3.type(), CV_8UC3);
    EXPECT_EQ(g3.at<cv::Vec3b>(1, 1), cv::Vec3b(0, 255, 128));
}

TEST(Window, RgbStacksBrainSubduralBone) {
    const auto windows = parse_windows("rgb");
    ASSERT_EQ(windows.size(), 3u);
    EXPECT_EQ(windows[0].name, "brain");
    EXPECT_EQ(windows[1].name, "subdural");
    EXPECT_EQ(windows[2].name, "bone");
    // brain: 0..80 HU, subdural: -20..180 HU, bone: -800..2000 HU.
    const cv::Mat hu = row_of({-1000, 30, -100, 600, 2000});
    const cv::Mat v = apply_windows(hu, windows);
    ASSERT_EQ(v.type(), CV_32FC3);
    const std::vector<cv::Vec3f> expected{
        {0.f, 0.f, 0.f},                  // -1000: air in all three
        {0.375f, 0.25f, 830.f / 2800.f},  // 30 HU
        {0.f, 0.f, 0.25f},                // -100 HU (fat): only bone shows it
        {1.f, 1.f, 0.5f},                 // 600 HU
        {1.f, 1.f, 1.f},                  // 2000 HU
    };
    for (int i = 0; i < v.cols; ++i) {
        for (int c = 0; c < 3; ++c) {
            EXPECT_FLOAT_EQ(v.at<cv::Vec3f>(0, i)[c], expected[static_cast<size_t>(i)][c]) << "at " << i << " ch " << c;
        }
    }
}

TEST(Window, ParsesNamesAndLevelWidth) {
    auto w = parse_windows("50,150");
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0].level, 50);
    EXPECT_EQ(w[0].width, 150);
    EXPECT_EQ(w[0].name, "50,150");
    w = parse_windows(" -20 , 100.5 ");
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0].level, -20);
    EXPECT_EQ(w[0].width, 100.5);
    w = parse_windows("Bone");
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0].level, 600);
    EXPECT_EQ(parse_windows("subdural")[0].width, 200);
    EXPECT_EQ(parse_windows("brain")[0].level, 40);
}

TEST(Window, BadSpecsThrowUsageError) {
    for (const char* bad : {"foo", "40", "40,-5", "40,0", "", "a,b", "40,80,3", "40,", ",80", "40,80x", "nan,80"}) {
        EXPECT_THROW(parse_windows(bad), UsageError) << "'" << bad << "'";
    }
    test::expect_usage_error([] { parse_windows("foo"); }, {"foo"});
}

TEST(Window, ApplyWindowAcceptsIntegerHuAndRejectsColour) {
    cv::Mat hu16(1, 3, CV_16SC1);
    hu16.at<short>(0, 0) = -1024;
    hu16.at<short>(0, 1) = 40;
    hu16.at<short>(0, 2) = 70;
    const cv::Mat v = apply_window(hu16, window_brain());
    EXPECT_EQ(v.at<float>(0, 0), 0.f);
    EXPECT_EQ(v.at<float>(0, 1), 0.5f);
    EXPECT_EQ(v.at<float>(0, 2), 0.875f);
    EXPECT_THROW(apply_window(cv::Mat(2, 2, CV_32FC3, cv::Scalar::all(0)), window_brain()), UsageError);
    EXPECT_THROW(apply_windows(hu16, {}), UsageError);
}

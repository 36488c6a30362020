// Heat-map overlay: sizes, types, exact blend values, and a zero map leaving the image unchanged.
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/explain/overlay.hpp"

using namespace hemoscan;

namespace {
cv::Mat gradient_image(int rows, int cols) {
    cv::Mat img(rows, cols, CV_8UC1);
    for (int y = 0; y < rows; ++y)
        for (int x = 0; x < cols; ++x) img.at<uchar>(y, x) = static_cast<uchar>((x * 7 + y * 3) % 256);
    return img;
}
}  // namespace

TEST(Overlay, SizeAndTypeForGreyAndColourImages) {
    const cv::Mat grey = gradient_image(50, 70);
    cv::Mat colour;
    cv::cvtColor(grey, colour, cv::COLOR_GRAY2BGR);
    const cv::Mat cam(7, 5, CV_32FC1, cv::Scalar(0.5));  // other size: resized to the image
    for (const cv::Mat& img : {grey, colour}) {
        const cv::Mat out = overlay_heatmap(img, cam);
        EXPECT_EQ(out.type(), CV_8UC3);
        EXPECT_EQ(out.size(), cv::Size(70, 50));
    }
}

// Tolerance: zero (the blend weight is alpha * cam, so cam = 0 keeps every pixel exactly).
TEST(Overlay, ZeroCamOrZeroAlphaLeavesImageUnchanged) {
    const cv::Mat grey = gradient_image(40, 30);
    cv::Mat expected;
    cv::cvtColor(grey, expected, cv::COLOR_GRAY2BGR);
    const cv::Mat zero = cv::Mat::zeros(10, 10, CV_32FC1);
    EXPECT_EQ(cv::norm(overlay_heatmap(grey, zero), expected, cv::NORM_INF), 0.0);
    EXPECT_EQ(cv::norm(overlay_heatmap(expected, zero, 1.0), expected, cv::NORM_INF), 0.0);
    const cv::Mat ones(40, 30, CV_32FC1, cv::Scalar(1.0));
    EXPECT_EQ(cv::norm(overlay_heatmap(grey, ones, 0.0), expected, cv::NORM_INF), 0.0);
}

TEST(Overlay, HotRegionGetsJetRedOthersUnchanged) {
    const cv::Mat grey(20, 20, CV_8UC1, cv::Scalar(100));
    cv::Mat cam = cv::Mat::zeros(20, 20, CV_32FC1);
    cam(cv::Rect(5, 5, 4, 4)).setTo(1.0f);
    const cv::Mat out = overlay_heatmap(grey, cam, 0.4);
    // JET at 1.0 is dark red, BGR (0, 0, 128): 0.6 * 100 + 0.4 * (0, 0, 128) = (60, 60, 111.2).
    EXPECT_EQ(out.at<cv::Vec3b>(6, 6), cv::Vec3b(60, 60, 111));
    EXPECT_EQ(out.at<cv::Vec3b>(15, 15), cv::Vec3b(100, 100, 100));
    EXPECT_EQ(out.at<cv::Vec3b>(0, 0), cv::Vec3b(100, 100, 100));
    // Out-of-range cam values are clamped: 7 acts as 1.
    cam(cv::Rect(5, 5, 4, 4)).setTo(7.0f);
    EXPECT_EQ(overlay_heatmap(grey, cam, 0.4).at<cv::Vec3b>(6, 6), cv::Vec3b(60, 60, 111));
}

TEST(Overlay, RejectsBadInputs) {
    const cv::Mat grey = gradient_image(8, 8);
    const cv::Mat cam = cv::Mat::zeros(8, 8, CV_32FC1);
    EXPECT_THROW(overlay_heatmap(cv::Mat(), cam), UsageError);
    EXPECT_THROW(overlay_heatmap(cv::Mat::zeros(8, 8, CV_32FC1), cam), UsageError);
    EXPECT_THROW(overlay_heatmap(grey, cv::Mat()), UsageError);
    EXPECT_THROW(overlay_heatmap(grey, cv::Mat::zeros(8, 8, CV_8UC1)), UsageError);
    EXPECT_THROW(overlay_heatmap(grey, cam, 1.5), UsageError);
    EXPECT_THROW(overlay_heatmap(grey, cam, -0.1), UsageError);
}

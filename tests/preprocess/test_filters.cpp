#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "hemoscan/error.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

using namespace hemoscan;

namespace {

std::set<int> values_of(const cv::Mat& mask8) {
    std::set<int> out;
    for (int y = 0; y < mask8.rows; ++y)
        for (int x = 0; x < mask8.cols; ++x) out.insert(mask8.at<uchar>(y, x));
    return out;
}

bool same(const cv::Mat& a, const cv::Mat& b) {
    return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

cv::Point2d centroid(const cv::Mat& binary) {
    const cv::Moments m = cv::moments(binary, true);
    return {m.m10 / m.m00, m.m01 / m.m00};
}

}  // namespace

// ---- resize ----

TEST(Resize, PlainResizeGivesTargetSizeAndKeepsChannels) {
    cv::Mat image(60, 100, CV_32FC3, cv::Scalar(0.1, 0.5, 0.9));
    ResizeOptions o;
    o.width = 32;
    o.height = 48;
    const cv::Mat out = resize_image(image, o);
    EXPECT_EQ(out.size(), cv::Size(32, 48));
    EXPECT_EQ(out.type(), CV_32FC3);
    // A constant image stays constant whatever the interpolation.
    EXPECT_NEAR(out.at<cv::Vec3f>(20, 10)[1], 0.5f, 1e-6);
    o.width = 300;  // enlarging one side
    EXPECT_EQ(resize_image(image, o).size(), cv::Size(300, 48));
    o.width = 0;
    EXPECT_THROW(resize_image(image, o), UsageError);
}

TEST(Resize, KeepAspectPadsAndCentres) {
    // 100 wide x 50 tall -> scaled to 64 x 32, padded by 16 rows above and below.
    cv::Mat image(50, 100, CV_32FC1, cv::Scalar(1));
    ResizeOptions o;
    o.width = 64;
    o.height = 64;
    o.keep_aspect = true;
    o.pad_value = -1.f;
    const cv::Mat out = resize_image(image, o);
    ASSERT_EQ(out.size(), cv::Size(64, 64));
    for (int y = 0; y < 64; ++y) {
        const float expected = (y >= 16 && y < 48) ? 1.f : -1.f;
        for (int x = 0; x < 64; ++x) ASSERT_FLOAT_EQ(out.at<float>(y, x), expected) << y << "," << x;
    }
    // The mask gets the same layout, padded with 0.
    cv::Mat mask(50, 100, CV_8UC1, cv::Scalar(5));
    const cv::Mat m = resize_mask(mask, o);
    ASSERT_EQ(m.size(), cv::Size(64, 64));
    EXPECT_EQ(cv::countNonZero(m.rowRange(16, 48) == 5), 32 * 64);
    EXPECT_EQ(cv::countNonZero(m.rowRange(0, 16)), 0);
    EXPECT_EQ(cv::countNonZero(m.rowRange(48, 64)), 0);

    // Off-centre content stays where it was relative to the image centre: a blob in a tall image.
    cv::Mat tall(120, 40, CV_32FC1, cv::Scalar(0));
    cv::rectangle(tall, cv::Rect(10, 50, 20, 20), cv::Scalar(1), cv::FILLED);  // centred on (19.5, 59.5)
    const cv::Mat t = resize_image(tall, o);  // scale 64/120, 21 x 64 content, left pad 21
    const cv::Point2d c = centroid(t > 0.5f);
    // Within half a pixel: 21 content columns cannot sit exactly centred in 64.
    EXPECT_NEAR(c.x, 31.5, 0.75);
    EXPECT_NEAR(c.y, 31.5, 0.25);
}

TEST(Resize, MaskStaysBinaryAndAlignedWithImage) {
    cv::Mat mask(50, 50, CV_8UC1, cv::Scalar(0));
    cv::circle(mask, cv::Point(20, 28), 9, cv::Scalar(3), cv::FILLED);
    cv::Mat image;
    mask.convertTo(image, CV_32F, 1.0 / 3.0);
    for (const cv::Size size : {cv::Size(37, 23), cv::Size(101, 77), cv::Size(16, 16)}) {
        ResizeOptions o;
        o.width = size.width;
        o.height = size.height;
        const cv::Mat m = resize_mask(mask, o);
        ASSERT_EQ(m.size(), size);
        ASSERT_EQ(m.type(), CV_8UC1);
        EXPECT_EQ(values_of(m), (std::set<int>{0, 3})) << size;
        // The label lands on the same spot as the image content (within a pixel).
        const cv::Mat im = resize_image(image, o);
        const cv::Point2d cm = centroid(m), ci = centroid(im > 0.5f);
        EXPECT_NEAR(cm.x, ci.x, 1.0) << size;
        EXPECT_NEAR(cm.y, ci.y, 1.0) << size;
    }
}

// ---- median ----

TEST(Median, K3RemovesSaltAndPepperExactly) {
    // Rows of constant value r * 0.1, a salt impulse at (1, 1) and a pepper impulse at (3, 3).
    cv::Mat clean(5, 5, CV_32FC1);
    for (int y = 0; y < 5; ++y) clean.row(y).setTo(static_cast<float>(y) * 0.1f);
    cv::Mat noisy = clean.clone();
    noisy.at<float>(1, 1) = 1.f;
    noisy.at<float>(3, 3) = -1.f;
    // By hand: the window of (2, 2) holds 0.1 0.1 1.0 | 0.2 0.2 0.2 | 0.3 0.3 -1.0 -> median 0.2; every
    // other window has at most one impulse among three-row triples, so the median is the row value.
    const cv::Mat out = median_filter(noisy, 3);
    ASSERT_EQ(out.type(), CV_32FC1);
    EXPECT_TRUE(same(out, clean));
}

TEST(Median, K7WorksOnFloatAndMatchesOpenCvOn8BitData) {
    cv::Mat noise8(31, 27, CV_8UC1);
    cv::RNG rng(12345);
    rng.fill(noise8, cv::RNG::UNIFORM, 0, 256);
    cv::Mat as_float;
    noise8.convertTo(as_float, CV_32F);
    for (int k : {5, 7, 9}) {
        cv::Mat expected8, expected;
        cv::medianBlur(noise8, expected8, k);
        expected8.convertTo(expected, CV_32F);
        const cv::Mat out = median_filter(as_float, k);
        ASSERT_EQ(out.type(), CV_32FC1);
        EXPECT_TRUE(same(out, expected)) << "k=" << k;
    }
    // Impulses on a flat float image vanish, on every channel.
    cv::Mat flat(40, 40, CV_32FC2, cv::Scalar(0.3, 0.7));
    for (int i = 0; i < 120; ++i) {
        flat.at<cv::Vec2f>(rng.uniform(0, 40), rng.uniform(0, 40)) = cv::Vec2f(i % 2 ? 1.f : 0.f, 5.f);
    }
    const cv::Mat out = median_filter(flat, 7);
    ASSERT_EQ(out.type(), CV_32FC2);
    EXPECT_TRUE(same(out, cv::Mat(40, 40, CV_32FC2, cv::Scalar(0.3, 0.7))));
}

TEST(Median, EvenKernelThrowsAndSmallKernelIsIdentity) {
    cv::Mat image(8, 8, CV_32FC1, cv::Scalar(0));
    image.at<float>(4, 4) = 1.f;
    EXPECT_THROW(median_filter(image, 4), UsageError);
    EXPECT_THROW(median_filter(image, 2), UsageError);
    EXPECT_TRUE(same(median_filter(image, 1), image));
    EXPECT_TRUE(same(median_filter(image, 0), image));
    EXPECT_EQ(median_filter(image, 3).at<float>(4, 4), 0.f);
}

// ---- normalisation ----

TEST(Normalize, UnitRangeGivesZeroToOne) {
    cv::Mat image(20, 30, CV_32FC2);
    cv::randu(image, cv::Scalar::all(3), cv::Scalar::all(7));
    const cv::Mat out = normalize_image(image, Normalization::UnitRange);
    ASSERT_EQ(out.type(), CV_32FC2);
    double lo = 0, hi = 0;
    cv::minMaxLoc(out.reshape(1), &lo, &hi);
    EXPECT_FLOAT_EQ(static_cast<float>(lo), 0.f);
    EXPECT_FLOAT_EQ(static_cast<float>(hi), 1.f);
    // A constant image becomes 0.
    const cv::Mat constant = normalize_image(cv::Mat(4, 4, CV_32FC1, cv::Scalar(9)), Normalization::UnitRange);
    EXPECT_EQ(cv::countNonZero(constant), 0);
    // None only converts.
    cv::Mat u8(2, 2, CV_8UC1, cv::Scalar(200));
    const cv::Mat none = normalize_image(u8, Normalization::None);
    EXPECT_EQ(none.type(), CV_32FC1);
    EXPECT_EQ(none.at<float>(1, 1), 200.f);
}

TEST(Normalize, ZScorePerChannel) {
    cv::Mat image(40, 50, CV_32FC3);
    cv::randn(image, cv::Scalar(5, -2, 100), cv::Scalar(3, 0.5, 20));
    const cv::Mat out = normalize_image(image, Normalization::ZScore);
    ASSERT_EQ(out.type(), CV_32FC3);
    cv::Scalar mean, stddev;
    cv::meanStdDev(out, mean, stddev);
    for (int c = 0; c < 3; ++c) {
        EXPECT_NEAR(mean[c], 0.0, 1e-5) << c;
        EXPECT_NEAR(stddev[c], 1.0, 1e-4) << c;
    }
    // A constant channel: std 0 -> x - mean = 0.
    const cv::Mat constant = normalize_image(cv::Mat(3, 3, CV_32FC1, cv::Scalar(4)), Normalization::ZScore);
    EXPECT_EQ(cv::countNonZero(constant), 0);
}

TEST(Normalize, ParsesNames) {
    EXPECT_EQ(parse_normalization("none"), Normalization::None);
    EXPECT_EQ(parse_normalization("unit"), Normalization::UnitRange);
    EXPECT_EQ(parse_normalization("ZScore"), Normalization::ZScore);
    EXPECT_THROW(parse_normalization("minmax2"), UsageError);
    EXPECT_THROW(parse_normalization(""), UsageError);
}

#include <gtest/gtest.h>

#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <unordered_set>

#include "hemoscan/augment/augment.hpp"
#include "hemoscan/error.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

bool same(const cv::Mat& a, const cv::Mat& b) {
    return a.size() == b.size() && a.type() == b.type() && (a.empty() || cv::norm(a, b, cv::NORM_INF) == 0);
}

std::set<int> values_of(const cv::Mat& mask8) {
    std::set<int> out;
    for (int y = 0; y < mask8.rows; ++y)
        for (int x = 0; x < mask8.cols; ++x) out.insert(mask8.at<uchar>(y, x));
    return out;
}

// Everything off: a test switches on what it checks.
AugmentOptions nothing() {
    AugmentOptions o;
    o.p_hflip = o.p_vflip = 0;
    o.rotate_deg = o.shear_deg = o.zoom = o.translate = 0;
    o.intensity_scale = o.contrast = o.gamma = o.noise_std = 0;
    return o;
}

Sample random_sample(int channels, cv::Size size, std::uint64_t seed) {
    Sample s;
    s.image = cv::Mat(size, CV_32FC(channels));
    cv::RNG rng(seed);
    cv::Mat flat = s.image.reshape(1);
    rng.fill(flat, cv::RNG::UNIFORM, 0.0, 1.0);
    s.mask = cv::Mat(size, CV_8UC1, cv::Scalar(0));
    s.mask(cv::Rect(size.width / 4, size.height / 3, size.width / 3, size.height / 4)).setTo(1);
    return s;
}

// A bright square on a dark image, labelled by the mask (label value 2).
Sample square_sample() {
    Sample s;
    s.image = cv::Mat(64, 64, CV_32FC1, cv::Scalar(0));
    s.mask = cv::Mat(64, 64, CV_8UC1, cv::Scalar(0));
    const cv::Rect square(18, 22, 16, 16);  // off-centre both ways: a flip moves it
    s.image(square).setTo(1.0);
    s.mask(square).setTo(2);
    return s;
}

}  // namespace

TEST(Augment, SameSeedSameResultDifferentSeedsDiffer) {
    const AugmentOptions o;  // defaults: everything on
    Sample a = random_sample(3, {48, 40}, 1), b = random_sample(3, {48, 40}, 1), c = random_sample(3, {48, 40}, 1);
    augment(a, o, 42);
    augment(b, o, 42);
    augment(c, o, 43);
    EXPECT_TRUE(same(a.image, b.image));
    EXPECT_TRUE(same(a.mask, b.mask));
    EXPECT_FALSE(same(a.image, c.image));
    const Sample original = random_sample(3, {48, 40}, 1);
    EXPECT_FALSE(same(a.image, original.image));

    const AugmentDraw d1 = draw_augment(o, {48, 40}, 7), d2 = draw_augment(o, {48, 40}, 7),
                      d3 = draw_augment(o, {48, 40}, 8);
    EXPECT_EQ(d1.angle_deg, d2.angle_deg);
    EXPECT_EQ(d1.noise_seed, d2.noise_seed);
    EXPECT_NE(d1.angle_deg, d3.angle_deg);
}

TEST(Augment, DrawsStayInTheirRanges) {
    AugmentOptions o;
    int hflips = 0;
    for (std::uint64_t seed = 0; seed < 500; ++seed) {
        const AugmentDraw d = draw_augment(o, {100, 50}, seed);
        hflips += d.hflip;
        EXPECT_FALSE(d.vflip);
        EXPECT_LE(std::abs(d.angle_deg), 15);
        EXPECT_LE(std::abs(d.shear_deg), 5);
        EXPECT_GE(d.scale, 0.9);
        EXPECT_LE(d.scale, 1.1);
        EXPECT_LE(std::abs(d.tx), 8.0);  // 0.08 * 100
        EXPECT_LE(std::abs(d.ty), 4.0);  // 0.08 * 50
        EXPECT_GE(d.intensity, 0.9);
        EXPECT_LE(d.intensity, 1.1);
        EXPECT_GE(d.gamma, 1 / 1.15 - 1e-12);
        EXPECT_LE(d.gamma, 1.15 + 1e-12);
        EXPECT_GE(d.noise_std, 0);
        EXPECT_LE(d.noise_std, 0.02);
    }
    EXPECT_GT(hflips, 200);
    EXPECT_LT(hflips, 300);
    o.enabled = false;
    const AugmentDraw off = draw_augment(o, {100, 50}, 3);
    EXPECT_FALSE(off.hflip);
    EXPECT_EQ(off.angle_deg, 0);
    EXPECT_EQ(off.scale, 1);
    EXPECT_EQ(off.noise_std, 0);
}

TEST(Augment, LabelledSquareStaysUnderItsMask) {
    AugmentOptions o;  // default intensity and noise, stronger geometry
    o.rotate_deg = 30;
    o.shear_deg = 10;
    o.zoom = 0.2;
    o.translate = 0.1;
    o.p_vflip = 0.5;
    for (std::uint64_t seed = 0; seed < 100; ++seed) {
        Sample s = square_sample();
        augment(s, o, mix_seed(5, 0, seed));
        ASSERT_EQ(s.mask.type(), CV_8UC1);
        ASSERT_EQ(s.mask.size(), s.image.size());
        const auto labels = values_of(s.mask);
        ASSERT_EQ(labels, (std::set<int>{0, 2})) << "seed " << seed;
        const cv::Mat bright = s.image > 0.5f;
        cv::Mat near_mask, inner_mask;
        cv::dilate(s.mask, near_mask, cv::Mat());
        cv::erode(s.mask, inner_mask, cv::Mat());
        // Bright pixels lie under the mask (1-pixel border tolerance) and the mask's inside is bright.
        EXPECT_EQ(cv::countNonZero(bright & (near_mask == 0)), 0) << "seed " << seed;
        EXPECT_EQ(cv::countNonZero((inner_mask != 0) & ~bright), 0) << "seed " << seed;
        const double ratio = static_cast<double>(cv::countNonZero(bright)) / cv::countNonZero(s.mask);
        EXPECT_GT(ratio, 0.75) << "seed " << seed;
        EXPECT_LT(ratio, 1.33) << "seed " << seed;
    }
}

TEST(Augment, HflipEqualsCvFlip) {
    AugmentOptions o = nothing();
    o.p_hflip = 1;
    Sample s = random_sample(3, {30, 20}, 9);
    const Sample original = random_sample(3, {30, 20}, 9);
    augment(s, o, 1);
    cv::Mat expected_image, expected_mask;
    cv::flip(original.image, expected_image, 1);
    cv::flip(original.mask, expected_mask, 1);
    EXPECT_TRUE(same(s.image, expected_image));
    EXPECT_TRUE(same(s.mask, expected_mask));
    // The image is asymmetric, so the flip did change it.
    EXPECT_FALSE(same(s.image, original.image));

    // vflip alone, through an explicit draw.
    Sample v = random_sample(1, {30, 20}, 9);
    AugmentDraw d;
    d.vflip = true;
    apply_augment(v, d, o);
    cv::Mat expected_v;
    cv::flip(random_sample(1, {30, 20}, 9).image, expected_v, 0);
    EXPECT_TRUE(same(v.image, expected_v));
}

TEST(Augment, MatrixMapsMaskPixels) {
    AugmentDraw d;
    d.hflip = true;
    const cv::Mat flip = augment_matrix(d, {30, 20});
    ASSERT_EQ(flip.type(), CV_64FC1);
    ASSERT_EQ(flip.size(), cv::Size(3, 2));
    EXPECT_EQ(flip.at<double>(0, 0), -1);
    EXPECT_EQ(flip.at<double>(0, 2), 29);
    EXPECT_EQ(flip.at<double>(1, 1), 1);
    EXPECT_EQ(flip.at<double>(1, 2), 0);

    // With everything on, a small blob lands where the matrix sends its centre.
    AugmentOptions o;
    o.p_vflip = 0.5;
    o.rotate_deg = 40;
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
        Sample s;
        s.image = cv::Mat(60, 80, CV_32FC1, cv::Scalar(0));
        s.mask = cv::Mat(60, 80, CV_8UC1, cv::Scalar(0));
        s.mask(cv::Rect(30, 20, 5, 5)).setTo(1);
        const AugmentDraw draw = draw_augment(o, s.image.size(), seed);
        const cv::Matx23d m = augment_matrix(draw, s.image.size());
        apply_augment(s, draw, o);
        const cv::Moments mo = cv::moments(s.mask, true);
        ASSERT_GT(mo.m00, 0);
        const cv::Vec3d centre(32, 22, 1);
        const cv::Vec2d expected = m * centre;
        EXPECT_NEAR(mo.m10 / mo.m00, expected[0], 0.8) << "seed " << seed;
        EXPECT_NEAR(mo.m01 / mo.m00, expected[1], 0.8) << "seed " << seed;
    }
}

TEST(Augment, IntensityOpsTouchOnlyTheImage) {
    AugmentOptions o = nothing();
    o.intensity_scale = 0.3;
    o.contrast = 0.3;
    o.gamma = 0.5;
    o.noise_std = 0.05;
    for (std::uint64_t seed = 0; seed < 10; ++seed) {
        Sample s = random_sample(2, {32, 32}, 3);
        const Sample original = random_sample(2, {32, 32}, 3);
        augment(s, o, seed);
        EXPECT_TRUE(same(s.mask, original.mask)) << seed;
        EXPECT_FALSE(same(s.image, original.image)) << seed;
    }
}

TEST(Augment, IntensityValuesAreExact) {
    const AugmentOptions o = nothing();
    Sample s;
    s.image = cv::Mat(4, 4, CV_32FC1, cv::Scalar(0.5));
    s.image.at<float>(0, 0) = 0.f;
    AugmentDraw d;
    d.gamma = 2;
    apply_augment(s, d, o);
    EXPECT_FLOAT_EQ(s.image.at<float>(1, 1), 0.25f);
    EXPECT_FLOAT_EQ(s.image.at<float>(0, 0), 0.f);
    // On every channel.
    s.image = cv::Mat(3, 3, CV_32FC3, cv::Scalar(0.5, 0.25, 1.0));
    apply_augment(s, d, o);
    EXPECT_EQ(cv::norm(s.image, cv::Mat(3, 3, CV_32FC3, cv::Scalar(0.25, 0.0625, 1.0)), cv::NORM_INF), 0.0);

    s.image = cv::Mat(4, 4, CV_32FC1, cv::Scalar(0.5));
    s.image.at<float>(0, 0) = 0.1f;  // mean 0.475
    d = AugmentDraw();
    d.intensity = 1.2;
    d.contrast = 2;
    apply_augment(s, d, o);
    // 0.5 * 1.2 = 0.6 (mean 0.57), then (0.6 - 0.57) * 2 + 0.57 = 0.63; 0.12 -> (0.12 - 0.57) * 2 + 0.57 = -0.33.
    EXPECT_NEAR(s.image.at<float>(1, 1), 0.63f, 1e-6);
    EXPECT_NEAR(s.image.at<float>(0, 0), -0.33f, 1e-6);
    EXPECT_NEAR(cv::mean(s.image)[0], 0.57, 1e-6);

    // Noise: seeded, with the drawn sigma.
    Sample n1, n2;
    n1.image = cv::Mat(100, 100, CV_32FC1, cv::Scalar(0.5));
    n2.image = n1.image.clone();
    d = AugmentDraw();
    d.noise_std = 0.1;
    d.noise_seed = 77;
    apply_augment(n1, d, o);
    apply_augment(n2, d, o);
    EXPECT_TRUE(same(n1.image, n2.image));
    cv::Scalar mean, stddev;
    cv::meanStdDev(n1.image, mean, stddev);
    EXPECT_NEAR(mean[0], 0.5, 0.005);
    EXPECT_NEAR(stddev[0], 0.1, 0.005);
}

TEST(Augment, DisabledLeavesSampleAlone) {
    AugmentOptions o;
    o.enabled = false;
    Sample s = random_sample(3, {20, 20}, 4);
    const Sample original = random_sample(3, {20, 20}, 4);
    augment(s, o, 99);
    EXPECT_TRUE(same(s.image, original.image));
    EXPECT_TRUE(same(s.mask, original.mask));
}

TEST(Augment, ManyChannelsWarpLikeOneChannel) {
    AugmentOptions o;
    o.noise_std = 0;
    o.gamma = 0;
    Sample five = random_sample(5, {40, 36}, 6);
    const AugmentDraw d = draw_augment(o, five.image.size(), 1234);
    std::vector<cv::Mat> inputs;
    cv::split(five.image, inputs);
    apply_augment(five, d, o);
    ASSERT_EQ(five.image.type(), CV_32FC(5));
    std::vector<cv::Mat> outputs;
    cv::split(five.image, outputs);
    for (int c = 0; c < 5; ++c) {
        Sample one;
        one.image = inputs[static_cast<size_t>(c)];
        apply_augment(one, d, o);
        EXPECT_LT(cv::norm(one.image, outputs[static_cast<size_t>(c)], cv::NORM_INF), 1e-6) << c;
    }
}

TEST(Augment, FillValueForPixelsFromOutside) {
    AugmentOptions o = nothing();
    o.fill_value = -3.f;
    Sample s;
    s.image = cv::Mat(20, 20, CV_32FC1, cv::Scalar(1));
    s.mask = cv::Mat(20, 20, CV_8UC1, cv::Scalar(1));
    AugmentDraw d;
    d.tx = 5;  // shift right by 5: the first columns come from outside
    apply_augment(s, d, o);
    EXPECT_EQ(s.image.at<float>(10, 2), -3.f);
    EXPECT_EQ(s.image.at<float>(10, 12), 1.f);
    EXPECT_EQ(s.mask.at<uchar>(10, 2), 0);
    EXPECT_EQ(s.mask.at<uchar>(10, 12), 1);
}

TEST(Augment, BadOptionsAndMaskSizeThrow) {
    AugmentOptions o;
    o.zoom = 1.5;
    EXPECT_THROW(draw_augment(o, {10, 10}, 1), UsageError);
    o = AugmentOptions();
    o.p_hflip = 2;
    EXPECT_THROW(draw_augment(o, {10, 10}, 1), UsageError);
    o = AugmentOptions();
    o.noise_std = -1;
    EXPECT_THROW(draw_augment(o, {10, 10}, 1), UsageError);

    Sample s;
    s.meta.path = "img/x.png";
    s.image = cv::Mat(10, 10, CV_32FC1, cv::Scalar(0));
    s.mask = cv::Mat(5, 10, CV_8UC1, cv::Scalar(0));
    try {
        augment(s, AugmentOptions(), 1);
        FAIL();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("img/x.png"), std::string::npos);
    }
}

TEST(MixSeed, DeterministicAndSpread) {
    EXPECT_EQ(mix_seed(1, 2, 3), mix_seed(1, 2, 3));
    EXPECT_NE(mix_seed(1, 0, 0), mix_seed(0, 1, 0));
    EXPECT_NE(mix_seed(0, 1, 0), mix_seed(0, 0, 1));
    EXPECT_NE(mix_seed(1, 0, 0), mix_seed(0, 0, 1));
    std::unordered_set<std::uint64_t> seen;
    for (std::uint64_t seed = 0; seed < 4; ++seed)
        for (std::uint64_t epoch = 0; epoch < 25; ++epoch)
            for (std::uint64_t index = 0; index < 100; ++index) seen.insert(mix_seed(seed, epoch, index));
    EXPECT_EQ(seen.size(), 10000u);
    // Neighbouring indices give unrelated seeds: about half of the 64 bits differ.
    int bits = 0;
    for (std::uint64_t i = 0; i < 1000; ++i) bits += __builtin_popcountll(mix_seed(7, 3, i) ^ mix_seed(7, 3, i + 1));
    EXPECT_NEAR(bits / 1000.0, 32.0, 1.0);
}

TEST(ParseOnOff, AcceptsOnOffTrueFalseOneZero) {
    for (const char* yes : {"on", "ON", "true", "1", " On "}) EXPECT_TRUE(parse_on_off(yes, "augment")) << yes;
    for (const char* no : {"off", "false", "0", "OFF"}) EXPECT_FALSE(parse_on_off(no, "augment")) << no;
    test::expect_usage_error([] { parse_on_off("maybe", "augment"); }, {"`augment`", "maybe"});
}

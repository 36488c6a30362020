// MR intensities: percentile scaling that ignores the scanner's gain, fixed phase scaling that keeps
// zero phase at 0.5, multi-sequence slices through preprocess (crop, median, resize with 5 channels),
// and an MR model refusing CT.
#include <gtest/gtest.h>

#include "hemoscan/error.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

// A disc of "tissue" (two intensities) in air with a little texture.
cv::Mat head_image(int n, float gain) {
    cv::Mat m(n, n, CV_32F, cv::Scalar(2.f * gain));
    cv::circle(m, {n / 2, n / 2}, n / 3, cv::Scalar(400.f * gain), cv::FILLED);
    cv::circle(m, {n / 2, n / 2}, n / 6, cv::Scalar(700.f * gain), cv::FILLED);
    for (int r = 0; r < n; ++r) m.at<float>(r, r) += 30.f * gain;
    return m;
}

}  // namespace

TEST(MrNormalize, MagnitudeIgnoresGainAndClampsToUnitRange) {
    const cv::Mat a = normalize_mr(head_image(64, 1.f), false, false);
    const cv::Mat b = normalize_mr(head_image(64, 3.7f), false, false);
    EXPECT_LT(cv::norm(a, b, cv::NORM_INF), 1e-5);
    double lo, hi;
    cv::minMaxLoc(a, &lo, &hi);
    EXPECT_NEAR(lo, 0.0, 1e-6);
    EXPECT_NEAR(hi, 1.0, 1e-6);
    EXPECT_FLOAT_EQ(a.at<float>(2, 5), 0.f) << "air below the head's 0.5th percentile";
    EXPECT_GT(a.at<float>(32, 34), a.at<float>(32, 14)) << "the inner disc stays brighter";
}

TEST(MrNormalize, PhaseKeepsZeroAtOneHalfInEveryEncoding) {
    cv::Mat radians(1, 3, CV_32F);
    radians.at<float>(0) = static_cast<float>(-test::kPi);
    radians.at<float>(1) = 0.f;
    radians.at<float>(2) = static_cast<float>(test::kPi / 2);
    const cv::Mat r = normalize_mr(radians, true, false);
    EXPECT_NEAR(r.at<float>(0), 0.0, 1e-6);
    EXPECT_NEAR(r.at<float>(1), 0.5, 1e-6);
    EXPECT_NEAR(r.at<float>(2), 0.75, 1e-6);
    cv::Mat siemens = (cv::Mat_<float>(1, 3) << -4096.f, 0.f, 2048.f);
    const cv::Mat s = normalize_mr(siemens, true, false);
    EXPECT_NEAR(s.at<float>(1), 0.5, 1e-6);
    EXPECT_NEAR(s.at<float>(2), 0.75, 1e-6);
    const cv::Mat e = normalize_mr(cv::Mat(1, 1, CV_8U, cv::Scalar(51)), true, true);
    EXPECT_NEAR(e.at<float>(0), 0.2, 1e-6);
    EXPECT_TRUE(is_phase_sequence("SWI_Phase"));
    EXPECT_FALSE(is_phase_sequence("swi_mag"));
}

TEST(MrNormalize, FiveSequencesGoThroughCropMedianAndResize) {
    std::vector<cv::Mat> channels;
    for (int c = 0; c < 4; ++c) channels.push_back(head_image(80, 1.f + c));
    channels.push_back(cv::Mat(80, 80, CV_32F, cv::Scalar(0.f)));  // phase in radians: 0, +1 in a disc
    cv::circle(channels.back(), {40, 40}, 10, cv::Scalar(1.f), cv::FILLED);
    DicomSlice slice;
    cv::merge(channels, slice.pixels);
    slice.meta.modality = "MR";
    slice.meta.path = "case";
    slice.meta.sequences = {"t1", "t2", "flair", "swi_mag", "swi_phase"};
    PreprocessOptions o;
    o.mr = true;
    o.sequences = slice.meta.sequences;
    o.crop_head = true;
    o.median_kernel = 3;
    o.resize = ResizeOptions{40, 40, true, 0.f};
    const Sample s = preprocess(slice, o);
    ASSERT_EQ(s.image.channels(), 5);
    EXPECT_EQ(s.image.size(), cv::Size(40, 40));
    std::vector<cv::Mat> out;
    cv::split(s.image, out);
    EXPECT_LT(cv::norm(out[0], out[3], cv::NORM_INF), 1e-4) << "magnitudes: the same after scaling";
    EXPECT_GT(cv::norm(out[0], out[4], cv::NORM_INF), 0.1) << "the phase channel is scaled by its own rule";
    EXPECT_EQ(o.channels(), 5);

    DicomSlice one;  // a single image for a 5-sequence model: refused, not repeated into every channel
    one.pixels = head_image(32, 1.f);
    one.meta.path = "one.png";
    test::expect_input_error([&] { preprocess(one, o); },
                             {"one.png", "1 MR image(s) where the model reads 5 sequences (t1, t2, flair, swi_mag, swi_phase)"});

    DicomSlice ct;
    ct.pixels = head_image(32, 1.f);
    ct.meta.modality = "CT";
    ct.meta.is_hu = true;
    ct.meta.path = "ct.dcm";
    o.sequences.clear();
    test::expect_input_error([&] { preprocess(ct, o); }, {"ct.dcm", "CT (Hounsfield units) where the model expects MR"});
}

// Lesion insertion: where a lesion may go (inside the brain, off skull and CSF), what one looks like
// (a small bright blob, clipped at white, contrast per channel) and seeded draws. The loader's use:
// tests/data/test_loader_lesion.cpp.
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include <cmath>

#include "hemoscan/augment/lesion.hpp"
#include "hemoscan/error.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

constexpr int kSize = 128;
const cv::Point kCentre(64, 64);

cv::Mat head(int channels = 1, unsigned seed = 1) { return test::brain_window_head(channels, seed); }

double distance(const cv::Point& p) { return std::hypot(p.x - kCentre.x, p.y - kCentre.y); }

LesionInsertOptions always() {
    LesionInsertOptions o;
    o.probability = 1;
    return o;
}

}  // namespace

TEST(Lesion, CandidatesAreBrainAwayFromSkullAndCsf) {
    const cv::Mat c = lesion_candidates(head());
    std::vector<cv::Point> pts;
    cv::findNonZero(c, pts);
    ASSERT_GT(pts.size(), 2000u);  // most of the brain disc (radius 52 minus the erosion)
    for (const cv::Point& p : pts) {
        ASSERT_LT(distance(p), 57 - 0.10 * kSize / 2 + 1) << p;  // eroded by ~6 px from the head's edge
        for (int vx : {54, 74}) {
            const double dx = (p.x - vx) / 4.0, dy = (p.y - 64) / 10.0;
            ASSERT_GT(dx * dx + dy * dy, 0.8) << "in a ventricle: " << p;
        }
    }
    EXPECT_EQ(cv::countNonZero(lesion_candidates(cv::Mat(kSize, kSize, CV_32FC1, cv::Scalar(0)))), 0);
    EXPECT_THROW(lesion_candidates(cv::Mat(8, 8, CV_8UC1, cv::Scalar(0))), UsageError);
}

TEST(Lesion, PaintsOneSmallBrightBlobInTheBrain) {
    for (std::uint64_t seed = 1; seed <= 20; ++seed) {
        const cv::Mat before = head();
        cv::Mat img = before.clone();
        ASSERT_TRUE(insert_lesion(img, always(), seed));
        const cv::Mat diff = img - before;
        double lo, hi;
        cv::Point at;
        cv::minMaxLoc(diff, &lo, &hi, nullptr, &at);
        EXPECT_GE(lo, -1e-6) << "a lesion only brightens";
        EXPECT_GT(hi, 0.2) << seed;  // blood over brain: 25-50 HU in an 80 HU window
        EXPECT_LT(hi, 0.8) << seed;
        EXPECT_LT(distance(at), 52) << "peak outside the brain, seed " << seed;
        const cv::Mat changed = diff > 0.1f;
        const int area = cv::countNonZero(changed);
        EXPECT_GE(area, 3) << seed;
        EXPECT_LE(area, static_cast<int>(3.15 * std::pow(0.05 * kSize + 2, 2))) << seed;  // <= the largest ellipse
        std::vector<cv::Point> pts;
        cv::findNonZero(changed, pts);
        for (const cv::Point& p : pts) ASSERT_LT(distance(p), 52) << "changed skull/air at " << p << ", seed " << seed;
        double mx;
        cv::minMaxLoc(img, nullptr, &mx);
        EXPECT_LE(mx, 1.0 + 1e-6);  // clipped at white
    }
}

TEST(Lesion, SeededAndProbabilistic) {
    cv::Mat a = head(), b = head(), c = head();
    ASSERT_TRUE(insert_lesion(a, always(), 7));
    ASSERT_TRUE(insert_lesion(b, always(), 7));
    ASSERT_TRUE(insert_lesion(c, always(), 8));
    test::expect_mat_exact(a, b);
    EXPECT_GT(cv::norm(a, c, cv::NORM_INF), 0.1);

    LesionInsertOptions off;  // probability 0
    cv::Mat untouched = head();
    EXPECT_FALSE(insert_lesion(untouched, off, 7));
    test::expect_mat_exact(untouched, head());

    LesionInsertOptions some;
    some.probability = 0.3;
    int painted = 0;
    for (std::uint64_t s = 0; s < 300; ++s) {
        cv::Mat img = head();
        painted += insert_lesion(img, some, s) ? 1 : 0;
    }
    EXPECT_GT(painted, 60);  // binomial(300, 0.3): mean 90, sd 7.9
    EXPECT_LT(painted, 120);

    cv::Mat black(kSize, kSize, CV_32FC1, cv::Scalar(0));  // no head: nothing to paint
    EXPECT_FALSE(insert_lesion(black, always(), 1));
    EXPECT_EQ(cv::countNonZero(black), 0);
}

TEST(Lesion, ContrastFollowsEachChannelsWindow) {
    LesionInsertOptions o = always();
    o.channel_gain = {1.f, 0.4f, 80.f / 2800.f};  // brain, subdural, bone windows
    const cv::Mat before = head(3);
    cv::Mat img = before.clone();
    ASSERT_TRUE(insert_lesion(img, o, 3));
    std::vector<cv::Mat> d;
    cv::split(img - before, d);
    double brain, subdural, bone;
    cv::minMaxLoc(d[0], nullptr, &brain);
    cv::minMaxLoc(d[1], nullptr, &subdural);
    cv::minMaxLoc(d[2], nullptr, &bone);
    EXPECT_NEAR(subdural / brain, 0.4, 0.02);
    EXPECT_NEAR(bone / brain, 80.0 / 2800.0, 0.005);
}

// Segmentation metrics against hand-made masks with hand-computed answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "hemoscan/error.hpp"
#include "hemoscan/metrics/segmentation.hpp"

using namespace hemoscan;

namespace {

// d slices of h x w zeros.
LabelSlices zeros(int w, int h, int d) {
    LabelSlices v;
    for (int z = 0; z < d; ++z) v.push_back(cv::Mat::zeros(h, w, CV_8UC1));
    return v;
}

// Sets the box [x0, x1] x [y0, y1] x [z0, z1] (inclusive) to `value`.
void fill_box(LabelSlices& v, int x0, int x1, int y0, int y1, int z0, int z1, int value = 1) {
    for (int z = z0; z <= z1; ++z)
        for (int y = y0; y <= y1; ++y)
            for (int x = x0; x <= x1; ++x) v[z].at<std::uint8_t>(y, x) = static_cast<std::uint8_t>(value);
}

// Independent reference: surface voxels by the definition, all pairwise distances, numpy percentile.
std::vector<std::array<int, 3>> brute_surface(const LabelSlices& v) {
    const int d = int(v.size()), h = v[0].rows, w = v[0].cols;
    auto fg = [&](int x, int y, int z) {
        return x >= 0 && y >= 0 && z >= 0 && x < w && y < h && z < d && v[z].at<std::uint8_t>(y, x) != 0;
    };
    std::vector<std::array<int, 3>> out;
    for (int z = 0; z < d; ++z)
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                if (fg(x, y, z) && (!fg(x - 1, y, z) || !fg(x + 1, y, z) || !fg(x, y - 1, z) || !fg(x, y + 1, z) ||
                                    !fg(x, y, z - 1) || !fg(x, y, z + 1)))
                    out.push_back({x, y, z});
    return out;
}

double brute_hd95(const LabelSlices& a, const LabelSlices& b, const std::array<double, 3>& s) {
    const auto sa = brute_surface(a), sb = brute_surface(b);
    std::vector<double> all;
    auto directed = [&](const auto& from, const auto& to) {
        for (const auto& p : from) {
            double best = 1e300;
            for (const auto& q : to) {
                const double dx = (p[0] - q[0]) * s[0], dy = (p[1] - q[1]) * s[1], dz = (p[2] - q[2]) * s[2];
                best = std::min(best, dx * dx + dy * dy + dz * dz);
            }
            all.push_back(std::sqrt(best));
        }
    };
    directed(sa, sb);
    directed(sb, sa);
    std::sort(all.begin(), all.end());
    const double pos = 0.95 * double(all.size() - 1);
    const size_t lo = size_t(pos), hi = std::min(lo + 1, all.size() - 1);
    return all[lo] + (pos - double(lo)) * (all[hi] - all[lo]);
}

}  // namespace

// ---- class_mask / overlap -----------------------------------------------------------------------

TEST(SegClassMask, SelectsOneClassOrTheForegroundUnion) {
    LabelSlices labels = {(cv::Mat_<std::uint8_t>(2, 3) << 0, 1, 2, 3, 2, 0)};
    auto m2 = class_mask(labels, 2);
    EXPECT_EQ(cv::countNonZero(m2[0] != (cv::Mat_<std::uint8_t>(2, 3) << 0, 0, 1, 0, 1, 0)), 0);
    auto any = class_mask(labels, kAnyForeground);
    EXPECT_EQ(cv::countNonZero(any[0] != (cv::Mat_<std::uint8_t>(2, 3) << 0, 1, 1, 1, 1, 0)), 0);
    auto some = class_mask(labels, kAnyForeground, {1, 3});
    EXPECT_EQ(cv::countNonZero(some[0] != (cv::Mat_<std::uint8_t>(2, 3) << 0, 1, 0, 1, 0, 0)), 0);
    EXPECT_THROW(class_mask(labels, 0), UsageError);
    EXPECT_THROW(class_mask({cv::Mat::zeros(2, 2, CV_32FC1)}, 1), UsageError);
}

TEST(SegOverlap, DiceAndIouExact) {
    // Truth: 4 x 4 box (16 voxels) on two slices = 32. Prediction: shifted by one column = 32 voxels,
    // overlap 3 columns x 4 rows x 2 slices = 24.
    auto truth = zeros(8, 8, 3), pred = zeros(8, 8, 3);
    fill_box(truth, 1, 4, 1, 4, 0, 1);
    fill_box(pred, 2, 5, 1, 4, 0, 1, 7);  // any non-zero value counts
    const Overlap o = overlap(pred, truth);
    EXPECT_EQ(o.tp, 24);
    EXPECT_EQ(o.fp, 8);
    EXPECT_EQ(o.fn, 8);
    EXPECT_DOUBLE_EQ(o.dice(), 48.0 / 64.0);
    EXPECT_DOUBLE_EQ(o.iou(), 24.0 / 40.0);

    const Overlap empty = overlap(zeros(4, 4, 2), zeros(4, 4, 2));
    EXPECT_DOUBLE_EQ(empty.dice(), 1.0);
    EXPECT_DOUBLE_EQ(empty.iou(), 1.0);
    const Overlap miss = overlap(zeros(8, 8, 3), truth);
    EXPECT_DOUBLE_EQ(miss.dice(), 0.0);
    EXPECT_DOUBLE_EQ(miss.iou(), 0.0);
}

TEST(SegOverlap, SizeMismatchIsUsageError) {
    EXPECT_THROW(overlap(zeros(4, 4, 2), zeros(4, 4, 3)), UsageError);
    EXPECT_THROW(overlap(zeros(4, 4, 2), zeros(5, 4, 2)), UsageError);
    EXPECT_THROW(hd95_mm(zeros(4, 4, 2), zeros(4, 5, 2), {1, 1, 1}), UsageError);
    EXPECT_THROW(lesion_detection(zeros(4, 4, 1), zeros(4, 4, 2)), UsageError);
}

// ---- Bootstrap intervals of Dice ------------------------------------------------------------------

namespace {

Overlap ov(long long tp, long long fp, long long fn) {
    Overlap o;
    o.tp = tp, o.fp = fp, o.fn = fn;
    return o;
}

double mean_dice(const std::vector<Overlap>& cases, bool positive_only) {
    double sum = 0;
    int n = 0;
    for (const Overlap& o : cases)
        if (!positive_only || o.tp + o.fn > 0) sum += o.dice(), ++n;
    return sum / n;
}

}  // namespace

TEST(SegBootstrap, IdenticalCasesGiveAPointInterval) {
    const DiceIntervals ci = bootstrap_dice_ci(std::vector<Overlap>(7, ov(8, 2, 2)));
    for (const ConfidenceInterval* c : {&ci.per_case, &ci.positive, &ci.pooled}) {
        EXPECT_DOUBLE_EQ(c->lo, 0.8);
        EXPECT_DOUBLE_EQ(c->hi, 0.8);
        EXPECT_EQ(c->used, 1000);
    }
}

// Ten empty-empty cases (Dice 1) and ten with a bleed found to a varying degree: each interval holds
// its point estimate, the positive one stays within the positives' range, the same seed gives the
// same interval, and four times the cases (the same mix) give an interval about half as wide.
TEST(SegBootstrap, IntervalsHoldTheEstimateAndNarrowWithMoreCases) {
    std::vector<Overlap> cases(10, ov(0, 0, 0));
    for (int i = 0; i < 10; ++i) cases.push_back(ov(100 + 40 * i, 60 - 5 * i, 80 - 7 * i));
    BootstrapOptions o;
    o.seed = 3;
    const DiceIntervals a = bootstrap_dice_ci(cases, o), b = bootstrap_dice_ci(cases, o);
    EXPECT_DOUBLE_EQ(a.per_case.lo, b.per_case.lo);
    EXPECT_DOUBLE_EQ(a.positive.hi, b.positive.hi);

    Overlap total;
    for (const Overlap& c : cases) total.tp += c.tp, total.fp += c.fp, total.fn += c.fn;
    const std::pair<const ConfidenceInterval*, double> checks[] = {
        {&a.per_case, mean_dice(cases, false)}, {&a.positive, mean_dice(cases, true)}, {&a.pooled, total.dice()}};
    for (const auto& [c, estimate] : checks) {
        EXPECT_LT(c->lo, estimate);
        EXPECT_GT(c->hi, estimate);
    }
    EXPECT_GT(a.positive.lo, cases[10].dice());
    EXPECT_LT(a.positive.hi, cases[19].dice());
    EXPECT_GT(a.per_case.hi - a.per_case.lo, 0.05);  // the empty cases' 1s against the positives' ~0.6

    std::vector<Overlap> more;
    for (int k = 0; k < 4; ++k) more.insert(more.end(), cases.begin(), cases.end());
    const DiceIntervals m = bootstrap_dice_ci(more, o);
    const double ratio = (m.per_case.hi - m.per_case.lo) / (a.per_case.hi - a.per_case.lo);
    EXPECT_GT(ratio, 0.35);
    EXPECT_LT(ratio, 0.65);
}

TEST(SegBootstrap, KnownAnswerForTwoCases) {
    // One bleed missed (Dice 0), one found exactly (1): a draw's mean is 0, 0.5 or 1 with probability
    // 1/4, 1/2, 1/4, so the 95% interval runs from 0 to 1.
    const DiceIntervals ci = bootstrap_dice_ci({ov(0, 0, 10), ov(10, 0, 0)});
    EXPECT_DOUBLE_EQ(ci.positive.lo, 0.0);
    EXPECT_DOUBLE_EQ(ci.positive.hi, 1.0);
    BootstrapOptions half;
    half.level = 0.4;  // percentiles 30 and 70: both fall on 0.5 (P(0.5) = 1/2 around the median)
    const DiceIntervals mid = bootstrap_dice_ci({ov(0, 0, 10), ov(10, 0, 0)}, half);
    EXPECT_DOUBLE_EQ(mid.per_case.lo, 0.5);
    EXPECT_DOUBLE_EQ(mid.per_case.hi, 0.5);
}

TEST(SegBootstrap, NoBleedLeavesThePositiveIntervalUndefined) {
    const DiceIntervals ci = bootstrap_dice_ci({ov(0, 0, 0), ov(0, 5, 0), ov(0, 0, 0)});
    EXPECT_EQ(ci.positive.used, 0);
    EXPECT_TRUE(std::isnan(ci.positive.lo));
    EXPECT_TRUE(std::isnan(ci.positive.hi));
    // The false-positive case (Dice 0) drawn 3 times in 1/27 of the draws, never in 8/27: the
    // per-case mean spans 0 to 1; pooled, any draw of it gives 0.
    EXPECT_DOUBLE_EQ(ci.per_case.lo, 0.0);
    EXPECT_DOUBLE_EQ(ci.per_case.hi, 1.0);
    EXPECT_DOUBLE_EQ(ci.pooled.lo, 0.0);
    EXPECT_DOUBLE_EQ(ci.pooled.hi, 1.0);
    EXPECT_EQ(ci.pooled.used, 1000);
}

TEST(SegBootstrap, BadArgumentsAreUsageErrors) {
    EXPECT_THROW(bootstrap_dice_ci({}), UsageError);
    BootstrapOptions o;
    o.resamples = 0;
    EXPECT_THROW(bootstrap_dice_ci({ov(1, 0, 0)}, o), UsageError);
    o.resamples = 10;
    o.level = 1.0;
    EXPECT_THROW(bootstrap_dice_ci({ov(1, 0, 0)}, o), UsageError);
}

// ---- HD95 ---------------------------------------------------------------------------------------

TEST(SegHd95, SingleVoxelsAtAnAnisotropicOffset) {
    auto a = zeros(6, 5, 4), b = zeros(6, 5, 4);
    fill_box(a, 1, 1, 1, 1, 1, 1);
    fill_box(b, 3, 3, 2, 2, 2, 2);
    const std::array<double, 3> s = {0.5, 0.7, 5.0};
    // Offset (2, 1, 1) voxels -> (1.0, 0.7, 5.0) mm; both directions give the same distance.
    EXPECT_NEAR(hd95_mm(a, b, s), std::sqrt(1.0 + 0.49 + 25.0), 1e-12);
    EXPECT_NEAR(hd95_mm(b, a, s), std::sqrt(1.0 + 0.49 + 25.0), 1e-12);
    EXPECT_DOUBLE_EQ(hd95_mm(a, a, s), 0.0);
}

TEST(SegHd95, ShiftedCube) {
    // A: cube [2,5]^3; B: the same cube shifted by one voxel in x. Spacing 2 x 1 x 3 mm.
    // A's surface (56 voxels): the x=2 face (16) is 2 mm (one x step) from B's x=3 face; the four
    // inner voxels of the x=5 face lie inside B and are 1 mm (one y step) from B's y=2 / y=5 faces;
    // the other 36 lie on B's surface (0). B -> A mirrors it. Pooled: 72 x 0, 8 x 1, 32 x 2 mm;
    // numpy's 95th percentile is at rank 0.95 * 111 = 105.45, inside the 2 mm run.
    auto a = zeros(10, 10, 10), b = zeros(10, 10, 10);
    fill_box(a, 2, 5, 2, 5, 2, 5);
    fill_box(b, 3, 6, 2, 5, 2, 5);
    EXPECT_DOUBLE_EQ(hd95_mm(a, b, {2.0, 1.0, 3.0}), 2.0);
}

TEST(SegHd95, PercentileInterpolatesLinearly) {
    // One slice of 1 x 10 voxels, spacing 0.5 mm in x. A: voxel 0; B: voxels 0 and 4 (2 mm apart).
    // Distances: A->B {0}, B->A {0, 2}: sorted {0, 0, 2}; rank 0.95 * 2 = 1.9 -> 0 + 0.9 * 2 = 1.8.
    auto a = zeros(10, 1, 1), b = zeros(10, 1, 1);
    fill_box(a, 0, 0, 0, 0, 0, 0);
    fill_box(b, 0, 0, 0, 0, 0, 0);
    fill_box(b, 4, 4, 0, 0, 0, 0);
    EXPECT_NEAR(hd95_mm(a, b, {0.5, 1.0, 5.0}), 1.8, 1e-12);
}

TEST(SegHd95, OneSliceIsATwoDimensionalImage) {
    // 5x5 square A and the 3x3 square B inside it, one slice: the surfaces are the contours (the
    // slice above and below do not exist, they are not background). A's ring: 12 voxels at 1, 4
    // corners at sqrt(2); B's ring (8): 1 each. 24 values: 20 x 1, 4 x sqrt(2); rank 21.85 -> sqrt(2).
    auto a = zeros(7, 7, 1), b = zeros(7, 7, 1);
    fill_box(a, 1, 5, 1, 5, 0, 0);
    fill_box(b, 2, 4, 2, 4, 0, 0);
    EXPECT_NEAR(hd95_mm(a, b, {1, 1, 1}), std::sqrt(2.0), 1e-12);
}

TEST(SegHd95, EmptyVolumes) {
    auto a = zeros(5, 5, 3), b = zeros(5, 5, 3);
    EXPECT_EQ(hd95_mm(a, b, {1, 1, 1}), 0.0);
    fill_box(b, 1, 2, 1, 2, 1, 1);
    EXPECT_TRUE(std::isnan(hd95_mm(a, b, {1, 1, 1})));
    EXPECT_TRUE(std::isnan(hd95_mm(b, a, {1, 1, 1})));
    EXPECT_THROW(hd95_mm(a, b, {1, 0, 1}), UsageError);
}

TEST(SegHd95, MatchesBruteForceOnRandomBlobs) {
    std::mt19937 rng(3);
    const std::array<double, 3> s = {0.7, 1.3, 4.0};
    for (int trial = 0; trial < 5; ++trial) {
        auto a = zeros(14, 11, 6), b = zeros(14, 11, 6);
        for (auto* v : {&a, &b})
            for (int k = 0; k < 4; ++k) {
                const int x = int(rng() % 11), y = int(rng() % 8), z = int(rng() % 5);
                fill_box(*v, x, x + int(rng() % 3), y, y + int(rng() % 3), z, z + int(rng() % 2));
            }
        SCOPED_TRACE(trial);
        EXPECT_NEAR(hd95_mm(a, b, s), brute_hd95(a, b, s), 1e-9);
    }
}

// ---- volume / lesions ---------------------------------------------------------------------------

TEST(SegVolume, KnownBoxInMillilitres) {
    // 10 x 8 x 4 voxels of 0.5 x 0.5 x 5 mm = 320 x 1.25 mm^3 = 400 mm^3 = 0.4 mL.
    auto v = zeros(20, 20, 6);
    fill_box(v, 3, 12, 5, 12, 1, 4);
    EXPECT_DOUBLE_EQ(volume_ml(v, {0.5, 0.5, 5.0}), 0.4);
    EXPECT_DOUBLE_EQ(volume_ml(zeros(3, 3, 2), {1, 1, 1}), 0.0);
}

TEST(SegLesions, CountsComponentsIn26Connectivity) {
    auto truth = zeros(12, 12, 4), pred = zeros(12, 12, 4);
    // Lesion 1: two boxes touching only at a corner across slices (one 26-connected component).
    fill_box(truth, 1, 2, 1, 2, 0, 0);
    fill_box(truth, 3, 4, 3, 4, 1, 1);
    // Lesion 2: far away, missed.
    fill_box(truth, 9, 10, 9, 10, 2, 3);
    // Lesion 3: a single voxel, found.
    fill_box(truth, 9, 9, 1, 1, 3, 3);
    // Predictions: touch lesion 1 on its second box only; hit lesion 3; two false-positive blobs.
    fill_box(pred, 4, 5, 4, 5, 1, 1);
    fill_box(pred, 9, 9, 1, 1, 3, 3);
    fill_box(pred, 6, 6, 8, 8, 0, 0);
    fill_box(pred, 1, 1, 10, 10, 3, 3);
    const LesionDetection r = lesion_detection(pred, truth);
    EXPECT_EQ(r.lesions, 3);
    EXPECT_EQ(r.detected, 2);
    EXPECT_EQ(r.false_positive_components, 2);
    EXPECT_DOUBLE_EQ(r.sensitivity(), 2.0 / 3.0);

    const LesionDetection none = lesion_detection(pred, zeros(12, 12, 4));
    EXPECT_EQ(none.lesions, 0);
    EXPECT_EQ(none.false_positive_components, 4);
    EXPECT_TRUE(std::isnan(none.sensitivity()));
}

TEST(SegPostprocess, RemovesComponentsBelowTheVolumeOnly) {
    auto v = zeros(12, 12, 4);
    // A 3x3x2 box of label 2 (18 voxels) joined at a corner, one slice up, to a 1-voxel label 5:
    // one 26-connected component of 19 voxels. A lone 2x2x1 box of label 1 (4 voxels) elsewhere.
    fill_box(v, 1, 3, 1, 3, 0, 1, 2);
    fill_box(v, 4, 4, 4, 4, 2, 2, 5);
    fill_box(v, 8, 9, 8, 9, 3, 3, 1);
    const std::array<double, 3> spacing{0.5, 0.5, 4.0};  // 1 mm^3 per voxel: 19 and 4 microlitres
    const LabelSlices before = [&] {
        LabelSlices c;
        for (const auto& m : v) c.push_back(m.clone());
        return c;
    }();

    EXPECT_EQ(remove_small_components(v, spacing, 0.0), 0);  // 0 = off
    EXPECT_EQ(remove_small_components(v, spacing, 0.004), 0);  // 4 voxels = 0.004 mL: kept (not below)
    EXPECT_EQ(overlap(v, before).fp + overlap(v, before).fn, 0);

    EXPECT_EQ(remove_small_components(v, spacing, 0.005), 1);
    EXPECT_EQ(v[3].at<std::uint8_t>(8, 8), 0);
    EXPECT_EQ(cv::countNonZero(v[3]), 0);
    // The joined component keeps every voxel and its labels.
    EXPECT_EQ(v[0].at<std::uint8_t>(2, 2), 2);
    EXPECT_EQ(v[2].at<std::uint8_t>(4, 4), 5);
    EXPECT_DOUBLE_EQ(volume_ml(class_mask(v, kAnyForeground), spacing), 0.019);

    EXPECT_EQ(remove_small_components(v, spacing, 0.02), 1);  // 19 voxels < 20
    EXPECT_DOUBLE_EQ(volume_ml(class_mask(v, kAnyForeground), spacing), 0.0);

    LabelSlices bad = zeros(4, 4, 2);
    bad[1] = cv::Mat::zeros(5, 4, CV_8UC1);
    EXPECT_THROW(remove_small_components(bad, spacing, 1.0), UsageError);
}

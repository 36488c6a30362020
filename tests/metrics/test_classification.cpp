#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "hemoscan/error.hpp"
#include "hemoscan/metrics/classification.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

// The tie case of the brief. Negatives: 0.1, 0.4. Positives: 0.35, 0.8, 0.4.
const std::vector<double> kTieScores = {0.1, 0.4, 0.35, 0.8, 0.4};
const std::vector<int> kTieTruths = {0, 0, 1, 1, 1};

// O(n^2) reference: share of (positive, negative) pairs ranked right, ties counting 1/2.
double pairwise_auc(const std::vector<double>& s, const std::vector<int>& t) {
    double wins = 0, pairs = 0;
    for (size_t i = 0; i < s.size(); ++i)
        for (size_t j = 0; j < s.size(); ++j)
            if (t[i] == 1 && t[j] == 0) {
                pairs += 1;
                wins += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
            }
    return wins / pairs;
}

// Noisy scores: positives shifted up, rounded to 0.05 so that there are many ties.
void random_case(size_t n, std::uint64_t seed, std::vector<double>& s, std::vector<int>& t) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> noise(0, 1);
    s.clear();
    t.clear();
    for (size_t i = 0; i < n; ++i) {
        const int y = (rng() % 3 == 0) ? 1 : 0;
        const double p = 1 / (1 + std::exp(-(noise(rng) + (y ? 1.0 : -0.5))));
        s.push_back(std::round(p * 20) / 20);
        t.push_back(y);
    }
}

}  // namespace

// ---- AUC ----------------------------------------------------------------------------------------

TEST(RocAuc, HandCaseWithTies) {
    // Ascending: 0.1 (rank 1), 0.35 (2), 0.4 and 0.4 (tied ranks 3 and 4 -> 3.5 each), 0.8 (5).
    // Positive ranks: 0.35 -> 2, 0.4 -> 3.5, 0.8 -> 5; sum R = 10.5.
    // U = R - P(P+1)/2 = 10.5 - 3*4/2 = 4.5; AUC = U / (P*N) = 4.5 / (3*2) = 0.75.
    // Pairwise check: 0.35 beats 0.1, loses to 0.4 (1); 0.8 beats both (2); 0.4 beats 0.1 and
    // ties 0.4 (1.5): 4.5 of 6 pairs.
    EXPECT_DOUBLE_EQ(roc_auc(kTieScores, kTieTruths), 0.75);
}

TEST(RocAuc, ScikitLearnDocExample) {
    // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75);
}

TEST(RocAuc, PerfectInvertedAndConstantClassifiers) {
    const std::vector<int> t = {0, 0, 1, 1, 0, 1};
    EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.2, 0.8, 0.9, 0.3, 0.7}, t), 1.0);
    EXPECT_DOUBLE_EQ(roc_auc({0.9, 0.8, 0.2, 0.1, 0.7, 0.3}, t), 0.0);
    EXPECT_DOUBLE_EQ(roc_auc({0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, t), 0.5);  // all ties
    EXPECT_DOUBLE_EQ(roc_auc({-3, -2, 5, 7, -1, 4}, t), 1.0);           // any real scores (logits)
}

TEST(RocAuc, MatchesPairwiseCountOnRandomTiedData) {
    std::vector<double> s;
    std::vector<int> t;
    for (std::uint64_t seed = 1; seed <= 5; ++seed) {
        random_case(300, seed, s, t);
        EXPECT_NEAR(roc_auc(s, t), pairwise_auc(s, t), 1e-12) << "seed " << seed;
    }
}

// A single class makes AUC undefined: we throw InputError (never a silent NaN).
TEST(RocAuc, SingleClassAndBadInputThrow) {
    EXPECT_THROW(roc_auc({0.1, 0.9}, {1, 1}), InputError);
    EXPECT_THROW(roc_auc({0.1, 0.9}, {0, 0}), InputError);
    EXPECT_THROW(roc_curve({0.1, 0.9}, {0, 0}), InputError);
    EXPECT_THROW(roc_auc({}, {}), InputError);
    EXPECT_THROW(roc_auc({0.1, 0.9, 0.3}, {0, 1}), UsageError);
    EXPECT_THROW(roc_auc({0.1, 0.9}, {0, 2}), InputError);
    EXPECT_THROW(roc_auc({0.1, std::nan("")}, {0, 1}), InputError);
    try {
        roc_auc({0.1, 0.9}, {1, 1});
        FAIL();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("single class"), std::string::npos) << e.what();
    }
}

TEST(RocCurve, HandCasePointsAndArea) {
    // Thresholds (distinct scores, decreasing): 0.8 -> tp 1 fp 0; 0.4 -> tp 2 fp 1; 0.35 -> tp 3 fp 1;
    // 0.1 -> tp 3 fp 2. P = 3, N = 2.
    const RocCurve c = roc_curve(kTieScores, kTieTruths);
    const std::vector<double> fpr = {0, 0, 0.5, 0.5, 1}, tpr = {0, 1.0 / 3, 2.0 / 3, 1, 1};
    ASSERT_EQ(c.fpr.size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
        EXPECT_DOUBLE_EQ(c.fpr[i], fpr[i]) << i;
        EXPECT_DOUBLE_EQ(c.tpr[i], tpr[i]) << i;
    }
    EXPECT_TRUE(std::isinf(c.thresholds[0]));
    EXPECT_EQ(c.thresholds[1], 0.8);
    EXPECT_EQ(c.thresholds[4], 0.1);
    double area = 0;
    for (size_t i = 1; i < c.fpr.size(); ++i) area += (c.fpr[i] - c.fpr[i - 1]) * (c.tpr[i] + c.tpr[i - 1]) / 2;
    EXPECT_DOUBLE_EQ(area, 0.75);
}

// ---- PR -----------------------------------------------------------------------------------------

TEST(PrAuc, HandCaseWithTies) {
    // Thresholds 0.8: tp 1 fp 0 -> P 1, R 1/3; 0.4: tp 2 fp 1 -> P 2/3, R 2/3; 0.35: tp 3 fp 1 ->
    // P 3/4, R 1 (stop: full recall).
    // AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/4 = 12/36 + 8/36 + 9/36 = 29/36.
    EXPECT_NEAR(pr_auc(kTieScores, kTieTruths), 29.0 / 36.0, 1e-12);
    const PrCurve c = pr_curve(kTieScores, kTieTruths);
    ASSERT_EQ(c.recall.size(), 4u);
    EXPECT_DOUBLE_EQ(c.precision[0], 1.0);
    EXPECT_DOUBLE_EQ(c.recall[0], 0.0);
    EXPECT_DOUBLE_EQ(c.precision[2], 2.0 / 3);
    EXPECT_DOUBLE_EQ(c.recall[3], 1.0);
    EXPECT_EQ(c.thresholds[3], 0.35);
}

TEST(PrAuc, ScikitLearnDocExampleAndEdges) {
    // sklearn.metrics.average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8333...
    // (0.8: P 1, R 1/2; 0.4: P 1/2, R 1/2; 0.35: P 2/3, R 1 -> 1/2 * 1 + 0 + 1/2 * 2/3 = 5/6.)
    EXPECT_NEAR(pr_auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 5.0 / 6.0, 1e-12);
    EXPECT_DOUBLE_EQ(pr_auc({0.1, 0.2, 0.8, 0.9}, {0, 0, 1, 1}), 1.0);
    EXPECT_DOUBLE_EQ(pr_auc({0.3, 0.6}, {1, 1}), 1.0);  // no negative: precision is always 1
    EXPECT_THROW(pr_auc({0.3, 0.6}, {0, 0}), InputError);
}

// ---- Calibration and loss -----------------------------------------------------------------------

TEST(Brier, HandCase) {
    // (0.9-1)^2 + (0.2-0)^2 + (0.6-0)^2 + (0.4-1)^2 = 0.01 + 0.04 + 0.36 + 0.36 = 0.77; / 4 = 0.1925
    EXPECT_NEAR(brier_score({0.9, 0.2, 0.6, 0.4}, {1, 0, 0, 1}), 0.1925, 1e-12);
    EXPECT_DOUBLE_EQ(brier_score({1, 0}, {1, 0}), 0.0);
    EXPECT_THROW(brier_score({1.2, 0}, {1, 0}), InputError);
}

TEST(Ece, HandCase) {
    // Bins of width 0.1: 0.05 -> bin 0; 0.15, 0.12 -> bin 1; 0.85 -> bin 8; 0.95 and 1.0 -> bin 9.
    // bin 0: |0.05 - 0| * 1/6; bin 1: |0.135 - 0.5| * 2/6 = 0.365 * 2/6;
    // bin 8: |0.85 - 0| * 1/6; bin 9: |0.975 - 1| * 2/6 = 0.025 * 2/6.
    // ECE = (0.05 + 0.73 + 0.85 + 0.05) / 6 = 1.68 / 6 = 0.28.
    EXPECT_NEAR(expected_calibration_error({0.05, 0.15, 0.12, 0.95, 0.85, 1.0}, {0, 1, 0, 1, 0, 1}), 0.28, 1e-12);
    // Perfectly calibrated bins give 0: p = 0.25 for 4 cases, one of them positive.
    EXPECT_NEAR(expected_calibration_error({0.25, 0.25, 0.25, 0.25}, {1, 0, 0, 0}), 0.0, 1e-12);
    // One bin: |mean p - mean y| overall = |0.5 - 0.25|.
    EXPECT_NEAR(expected_calibration_error({0.2, 0.8, 0.3, 0.7}, {1, 0, 0, 0}, 1), 0.25, 1e-12);
    EXPECT_THROW(expected_calibration_error({0.2}, {1}, 0), UsageError);
}

TEST(LogLoss, HandCaseAndClipping) {
    EXPECT_NEAR(log_loss({0.8, 0.3}, {1, 0}), (-std::log(0.8) - std::log(0.7)) / 2, 1e-12);
    // p = 0 for a positive is clipped to 1e-7: -ln(1e-7) = 16.118...
    EXPECT_NEAR(log_loss({0.0}, {1}), -std::log(1e-7), 1e-9);
    EXPECT_NEAR(log_loss({1.0}, {1}), -std::log(1 - 1e-7), 1e-12);
    EXPECT_THROW(log_loss({-0.1}, {1}), InputError);
}

TEST(RsnaLogLoss, HandCaseWeightsAnyTwice) {
    const std::vector<std::string> labels = {"any",          "epidural", "intraparenchymal", "intraventricular",
                                             "subarachnoid", "subdural"};
    // Row 0: truths 1 0 0 0 0 1, probs 0.9 0.1 0.2 0.1 0.1 0.8. Per-label losses: any -ln 0.9 (a),
    // epidural a, intraparenchymal -ln 0.8 (b), intraventricular a, subarachnoid a, subdural b.
    // Weighted: (2a + a + b + a + a + b) / (2+1+1+1+1+1) = (5a + 2b) / 7.
    // Row 1: all truths 0, all probs 0.5: every loss is ln 2, weighted mean ln 2.
    // Metric = ((5a + 2b)/7 + ln 2) / 2 = 0.41608...
    const double a = -std::log(0.9), b = -std::log(0.8);
    const double expected = ((5 * a + 2 * b) / 7 + std::log(2.0)) / 2;
    const double got = rsna_weighted_log_loss({{0.9, 0.1, 0.2, 0.1, 0.1, 0.8}, {0.5, 0.5, 0.5, 0.5, 0.5, 0.5}},
                                              {{1, 0, 0, 0, 0, 1}, {0, 0, 0, 0, 0, 0}}, labels);
    EXPECT_NEAR(got, expected, 1e-12);
    EXPECT_NEAR(got, 0.41608, 1e-5);
    // The weight matters: the unweighted mean would be ((4a + 2b)/6 + ln 2)/2.
    EXPECT_GT(std::abs(got - ((4 * a + 2 * b) / 6 + std::log(2.0)) / 2), 1e-3);
}

TEST(RsnaLogLoss, OnlyForLabelSetsWithAny) {
    EXPECT_TRUE(has_rsna_any_label({"epidural", "Any"}));
    EXPECT_FALSE(has_rsna_any_label({"hemorrhage", "normal"}));
    EXPECT_THROW(rsna_weighted_log_loss({{0.5, 0.5}}, {{0, 1}}, {"hemorrhage", "normal"}), UsageError);
    EXPECT_THROW(rsna_weighted_log_loss({{0.5}}, {{0, 1}}, {"any", "subdural"}), UsageError);
    EXPECT_THROW(rsna_weighted_log_loss({}, {}, {"any"}), InputError);
}

// ---- Threshold metrics --------------------------------------------------------------------------

TEST(Confusion, HandCaseAndDerivedMetrics) {
    // score >= 0.5 is positive: 0.9 (1) tp, 0.8 (1) tp, 0.7 (0) fp, 0.6 (1) tp, 0.5 (0) fp,
    // 0.4 (0) tn, 0.3 (1) fn, 0.2 (0) tn -> tn 2, fp 2, fn 1, tp 3.
    const Confusion c = confusion_at({0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2}, {1, 1, 0, 1, 0, 0, 1, 0}, 0.5);
    EXPECT_EQ(c.tn, 2);
    EXPECT_EQ(c.fp, 2);
    EXPECT_EQ(c.fn, 1);
    EXPECT_EQ(c.tp, 3);
    EXPECT_EQ(c.n(), 8);
    EXPECT_DOUBLE_EQ(c.accuracy(), 5.0 / 8);
    EXPECT_DOUBLE_EQ(c.precision(), 3.0 / 5);
    EXPECT_DOUBLE_EQ(c.recall(), 3.0 / 4);
    EXPECT_DOUBLE_EQ(c.sensitivity(), 3.0 / 4);
    EXPECT_DOUBLE_EQ(c.specificity(), 2.0 / 4);
    EXPECT_DOUBLE_EQ(c.f1(), 2.0 / 3);  // 2*3 / (2*3 + 2 + 1)
}

TEST(Confusion, ZeroOverZeroIsZero) {
    // Nothing predicted positive: precision 0/0 -> 0; no positive case: recall 0/0 -> 0, F1 0.
    const Confusion c = confusion_at({0.1, 0.2}, {0, 0}, 0.9);
    EXPECT_EQ(c.tn, 2);
    EXPECT_DOUBLE_EQ(c.precision(), 0.0);
    EXPECT_DOUBLE_EQ(c.recall(), 0.0);
    EXPECT_DOUBLE_EQ(c.f1(), 0.0);
    EXPECT_DOUBLE_EQ(c.specificity(), 1.0);
    EXPECT_DOUBLE_EQ(Confusion{}.accuracy(), 0.0);
}

TEST(Youden, HandCases) {
    // Tie case: J at 0.8 = 1/3 - 0; at 0.4 = 2/3 - 1/2 = 1/6; at 0.35 = 1 - 1/2 = 1/2; at 0.1 = 0.
    EXPECT_EQ(youden_threshold(kTieScores, kTieTruths), 0.35);
    // Tied J: at 0.9 J = 1/2 - 0 = 1/2; at 0.7: 1/2 - 1/2 = 0; at 0.6: 1 - 1/2 = 1/2; at 0.3: 0.
    // 0.9 and 0.6 tie -> the higher threshold, 0.9.
    EXPECT_EQ(youden_threshold({0.9, 0.7, 0.6, 0.3}, {1, 0, 1, 0}), 0.9);
    EXPECT_THROW(youden_threshold({0.9, 0.7}, {1, 1}), InputError);
}

// ---- Bootstrap ----------------------------------------------------------------------------------

TEST(Bootstrap, ContainsEstimateAndIsSeeded) {
    std::vector<double> s;
    std::vector<int> t;
    random_case(200, 7, s, t);
    const double auc = roc_auc(s, t);
    BootstrapOptions o;
    o.seed = 42;
    const ConfidenceInterval a = bootstrap_auc_ci(s, t, o), b = bootstrap_auc_ci(s, t, o);
    EXPECT_EQ(a.lo, b.lo);
    EXPECT_EQ(a.hi, b.hi);
    EXPECT_EQ(a.used, 1000);  // 200 cases, a third positive: a single-class resample never happens
    EXPECT_LT(a.lo, auc);
    EXPECT_GT(a.hi, auc);
    EXPECT_GT(a.hi - a.lo, 0.03);  // n = 200: the 95 % interval is several points wide
    EXPECT_LT(a.hi - a.lo, 0.3);
    o.seed = 43;
    const ConfidenceInterval c = bootstrap_auc_ci(s, t, o);
    EXPECT_TRUE(c.lo != a.lo || c.hi != a.hi);
}

TEST(Bootstrap, DegenerateDataGiveDegenerateIntervals) {
    // Perfect separation stays perfect in every resample; all ties stay 0.5.
    const ConfidenceInterval perfect = bootstrap_auc_ci({0.1, 0.2, 0.3, 0.7, 0.8, 0.9}, {0, 0, 0, 1, 1, 1});
    EXPECT_DOUBLE_EQ(perfect.lo, 1.0);
    EXPECT_DOUBLE_EQ(perfect.hi, 1.0);
    EXPECT_LT(perfect.used, 1000);  // 6 cases: some resamples hold one class only and are skipped
    EXPECT_GT(perfect.used, 900);
    const ConfidenceInterval ties = bootstrap_auc_ci({0.5, 0.5, 0.5, 0.5}, {0, 1, 0, 1});
    EXPECT_DOUBLE_EQ(ties.lo, 0.5);
    EXPECT_DOUBLE_EQ(ties.hi, 0.5);
}

TEST(Bootstrap, GroupsResampleWholePatients) {
    std::vector<double> s;
    std::vector<int> t;
    random_case(60, 3, s, t);
    BootstrapOptions o;
    o.seed = 5;
    // One group per case draws exactly as the per-case bootstrap.
    std::vector<std::string> own;
    for (size_t i = 0; i < s.size(); ++i) own.push_back("p" + std::to_string(i));
    const ConfidenceInterval per_case = bootstrap_auc_ci(s, t, o), grouped = bootstrap_auc_ci(s, t, o, own);
    EXPECT_EQ(per_case.lo, grouped.lo);
    EXPECT_EQ(per_case.hi, grouped.hi);
    // Two patients, one with only positive slices and one with only negative ones: a resample has
    // both classes only when it draws both patients (probability 1/2), while single slices almost
    // always give both classes.
    std::vector<double> s2 = {0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1};
    std::vector<int> t2 = {1, 1, 1, 1, 0, 0, 0, 0};
    std::vector<std::string> g2 = {"A", "A", "A", "A", "B", "B", "B", "B"};
    const ConfidenceInterval by_patient = bootstrap_auc_ci(s2, t2, o, g2);
    EXPECT_GT(by_patient.used, 400);
    EXPECT_LT(by_patient.used, 600);
    EXPECT_GT(bootstrap_auc_ci(s2, t2, o).used, 980);
    EXPECT_THROW(bootstrap_auc_ci(s2, t2, o, {"A"}), UsageError);
    o.resamples = 0;
    EXPECT_THROW(bootstrap_auc_ci(s2, t2, o), UsageError);
}

// ---- Per-label JSON -----------------------------------------------------------------------------

TEST(LabelJson, ShapeAndValues) {
    LabelReportOptions o;
    o.threshold = 0.5;
    o.bootstrap.resamples = 200;
    const std::vector<double> s = {0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2};
    const std::vector<int> t = {1, 1, 0, 1, 0, 0, 1, 0};
    const nlohmann::json j = label_metrics_json(s, t, o);
    for (const char* key : {"auc", "auc_ci95", "pr_auc", "accuracy", "sensitivity", "specificity", "precision", "f1",
                            "brier", "ece", "threshold", "confusion", "n", "positives"})
        EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j.size(), 14u);
    EXPECT_DOUBLE_EQ(j["auc"].get<double>(), roc_auc(s, t));
    ASSERT_TRUE(j["auc_ci95"].is_array());
    EXPECT_LE(j["auc_ci95"][0].get<double>(), j["auc_ci95"][1].get<double>());
    EXPECT_EQ(j["confusion"], nlohmann::json::parse("[[2, 2], [1, 3]]"));
    EXPECT_DOUBLE_EQ(j["sensitivity"].get<double>(), 0.75);
    EXPECT_DOUBLE_EQ(j["specificity"].get<double>(), 0.5);
    EXPECT_DOUBLE_EQ(j["threshold"].get<double>(), 0.5);
    EXPECT_EQ(j["n"], 8);
    EXPECT_EQ(j["positives"], 4);
    // Without a threshold, Youden's J on these data picks it.
    const nlohmann::json y = label_metrics_json(s, t, LabelReportOptions{});
    EXPECT_DOUBLE_EQ(y["threshold"].get<double>(), youden_threshold(s, t));
}

TEST(LabelJson, SingleClassGivesNullAuc) {
    const nlohmann::json j = label_metrics_json({0.1, 0.2, 0.3}, {0, 0, 0});
    EXPECT_TRUE(j["auc"].is_null());
    EXPECT_TRUE(j["auc_ci95"].is_null());
    EXPECT_TRUE(j["pr_auc"].is_null());
    EXPECT_DOUBLE_EQ(j["threshold"].get<double>(), 0.5);
    EXPECT_DOUBLE_EQ(j["specificity"].get<double>(), 1.0);
    EXPECT_EQ(j["positives"], 0);
}

// ---- Multi-class --------------------------------------------------------------------------------

TEST(MultiClass, HandCase) {
    // argmax: 0 (truth 0), 1 (1), 2 (2), 0 (1), 0 (1: tie 0.4/0.4 -> lower index), 2 (0).
    const MultiClassMetrics m = multiclass_metrics(
        {{0.7, 0.2, 0.1}, {0.1, 0.8, 0.1}, {0.3, 0.3, 0.4}, {0.5, 0.4, 0.1}, {0.4, 0.4, 0.2}, {0.2, 0.3, 0.5}},
        {0, 1, 2, 1, 1, 0});
    const std::vector<std::vector<long>> expected = {{1, 0, 1}, {2, 1, 0}, {0, 0, 1}};
    EXPECT_EQ(m.confusion, expected);
    EXPECT_DOUBLE_EQ(m.accuracy, 0.5);
    // Precision = diagonal / column sum: 1/3, 1/1, 1/2. Recall = diagonal / row sum: 1/2, 1/3, 1/1.
    EXPECT_DOUBLE_EQ(m.precision[0], 1.0 / 3);
    EXPECT_DOUBLE_EQ(m.precision[1], 1.0);
    EXPECT_DOUBLE_EQ(m.precision[2], 0.5);
    EXPECT_DOUBLE_EQ(m.recall[0], 0.5);
    EXPECT_DOUBLE_EQ(m.recall[1], 1.0 / 3);
    EXPECT_DOUBLE_EQ(m.recall[2], 1.0);
    // F1 = 2 tp / (row + column): 2/5, 2/4, 2/3; macro = (0.4 + 0.5 + 2/3) / 3.
    EXPECT_DOUBLE_EQ(m.f1[0], 0.4);
    EXPECT_DOUBLE_EQ(m.f1[1], 0.5);
    EXPECT_DOUBLE_EQ(m.f1[2], 2.0 / 3);
    EXPECT_NEAR(m.macro_f1, (0.4 + 0.5 + 2.0 / 3) / 3, 1e-12);
    EXPECT_NEAR(m.macro_precision, (1.0 / 3 + 1.0 + 0.5) / 3, 1e-12);
    EXPECT_NEAR(m.macro_recall, (0.5 + 1.0 / 3 + 1.0) / 3, 1e-12);

    const nlohmann::json j = multiclass_json(m, {"normal", "bleed", "stroke"});
    EXPECT_EQ(j["confusion"], nlohmann::json::parse("[[1,0,1],[2,1,0],[0,0,1]]"));
    EXPECT_EQ(j["classes"]["bleed"]["support"], 3);
    EXPECT_DOUBLE_EQ(j["classes"]["stroke"]["recall"].get<double>(), 1.0);
    EXPECT_NEAR(j["macro_recall"].get<double>(), (0.5 + 1.0 / 3 + 1.0) / 3, 1e-12);
    EXPECT_THROW(multiclass_json(m, {"a", "b"}), UsageError);
}

TEST(MultiClass, ConfusionMatrixAndErrors) {
    EXPECT_EQ(confusion_matrix({0, 1, 1, 2}, {0, 2, 1, 2}, 3),
              (std::vector<std::vector<long>>{{1, 0, 0}, {0, 1, 1}, {0, 0, 1}}));
    EXPECT_THROW(confusion_matrix({0, 3}, {0, 1}, 3), InputError);
    EXPECT_THROW(confusion_matrix({0, 1}, {0}, 3), UsageError);
    EXPECT_THROW(multiclass_metrics({{0.5, 0.5}, {0.2}}, {0, 1}), UsageError);
    EXPECT_THROW(multiclass_metrics({{0.5, 0.5}}, {0, 1}), UsageError);
    EXPECT_THROW(multiclass_metrics({}, {}), InputError);
}

// Separated classes: negatives 0.1, 0.2, positives 0.6, 0.9. Youden's J = 1 for any t in (0.2, 0.6];
// the margin threshold is the logit midpoint of 0.2 and 0.6: logit(0.2) = -1.3863, logit(0.6) =
// 0.4055, mean -0.4904 -> sigmoid = 0.3798.
TEST(Youden, MarginThresholdIsMidpointOfOptimalGap) {
    std::vector<double> s{0.1, 0.2, 0.6, 0.9};
    std::vector<int> t{0, 0, 1, 1};
    EXPECT_DOUBLE_EQ(hemoscan::youden_threshold(s, t), 0.6);
    EXPECT_NEAR(hemoscan::youden_margin_threshold(s, t), 0.379796, 1e-5);
    // Non-probability scores: linear midpoint.
    std::vector<double> z{-3, -1, 2, 5};
    EXPECT_DOUBLE_EQ(hemoscan::youden_margin_threshold(z, t), 0.5);
    // Overlap: negatives 0.1, 0.7; positives 0.6, 0.9. J = 0.5 at t = 0.9 (tpr .5, fpr 0) and at t = 0.6
    // (tpr 1, fpr .5): the first run is t = 0.9 alone, gap (0.7, 0.9] -> logit midpoint of 0.7 and 0.9.
    std::vector<double> o{0.1, 0.7, 0.6, 0.9};
    double lm = 0.5 * (std::log(0.7 / 0.3) + std::log(0.9 / 0.1));
    EXPECT_NEAR(hemoscan::youden_margin_threshold(o, t), 1 / (1 + std::exp(-lm)), 1e-9);
}

// With a prior (the model's balanced decision point) the optimal gap nearest the prior wins, and a
// prior inside it is kept.
TEST(Youden, PriorInsideTheOptimalGapIsKept) {
    std::vector<double> s{0.1, 0.2, 0.6, 0.9};
    std::vector<int> t{0, 0, 1, 1};
    EXPECT_DOUBLE_EQ(hemoscan::youden_margin_threshold(s, t, 0.5), 0.5);
    EXPECT_DOUBLE_EQ(hemoscan::youden_margin_threshold(s, t, 0.6), 0.6);  // (0.2, 0.6] holds its upper end
    // A prior outside the only optimal gap does not move it: its logit midpoint, as without a prior.
    EXPECT_NEAR(hemoscan::youden_margin_threshold(s, t, 0.05), 0.379796, 1e-5);
    EXPECT_NEAR(hemoscan::youden_margin_threshold(s, t, 0.95), 0.379796, 1e-5);
    EXPECT_THROW(hemoscan::youden_margin_threshold(s, t, 1.0), UsageError);
}

// Highest first: 0.99 P, 0.774 P, 0.77 N, 0.45 P, 0.43 N, 0.1 N. J = 1/3, 2/3, 1/3, 2/3, 1/3, 0: two
// optimal gaps, (0.77, 0.774] and (0.43, 0.45]. Without a prior the higher one; with prior 0.5 the
// lower one, whose upper end 0.45 is 0.20 logits from the prior (the higher's lower end: 1.21).
TEST(Youden, PriorPicksTheNearestOfTiedOptimalGaps) {
    std::vector<double> s{0.99, 0.774, 0.77, 0.45, 0.43, 0.1};
    std::vector<int> t{1, 1, 0, 1, 0, 0};
    auto mid = [](double a, double b) {
        const double m = 0.5 * (std::log(a / (1 - a)) + std::log(b / (1 - b)));
        return 1 / (1 + std::exp(-m));
    };
    EXPECT_NEAR(hemoscan::youden_margin_threshold(s, t), mid(0.77, 0.774), 1e-9);
    EXPECT_NEAR(hemoscan::youden_margin_threshold(s, t, 0.5), mid(0.43, 0.45), 1e-9);
    EXPECT_NEAR(hemoscan::youden_margin_threshold(s, t, 0.9), mid(0.77, 0.774), 1e-9);
    // Raw scores: the same on a linear scale, prior 0 inside (-1, 1].
    std::vector<double> z{3, 1, -1, -3};
    std::vector<int> tz{1, 1, 0, 0};
    EXPECT_DOUBLE_EQ(hemoscan::youden_margin_threshold(z, tz, 0.0), 0.0);
    EXPECT_DOUBLE_EQ(hemoscan::youden_margin_threshold(z, tz, 5.0), 0.0);
}

TEST(MultiClass, BootstrapIntervalsBracketTheFiguresAndResampleWholePatients) {
    // 3 classes, 60 cases of 10 patients: 2 patients wrong (accuracy 0.8). Patients hold 6 cases each, all right or
    // all wrong, so drawing patients (not cases) must widen the interval.
    std::vector<std::vector<double>> probs;
    std::vector<int> truths;
    std::vector<std::string> patients;
    for (int i = 0; i < 60; ++i) {
        const int t = i % 3;
        const bool right = (i / 6) % 4 != 3;
        std::vector<double> p(3, 0.1);
        p[static_cast<size_t>(right ? t : (t + 1) % 3)] = 0.8;
        probs.push_back(p);
        truths.push_back(t);
        patients.push_back("p" + std::to_string(i / 6));
    }
    BootstrapOptions o;
    o.seed = 3;
    const MultiClassMetrics m = multiclass_metrics(probs, truths);
    ASSERT_DOUBLE_EQ(m.accuracy, 0.8);
    const MultiClassIntervals cases = bootstrap_multiclass_ci(probs, truths, o);
    const MultiClassIntervals grouped = bootstrap_multiclass_ci(probs, truths, o, patients);
    for (const auto* ci : {&cases, &grouped}) {
        EXPECT_LT(ci->accuracy.lo, m.accuracy);
        EXPECT_GT(ci->accuracy.hi, m.accuracy);
        EXPECT_LT(ci->macro_f1.lo, m.macro_f1);
        EXPECT_GT(ci->macro_f1.hi, m.macro_f1);
        EXPECT_EQ(ci->accuracy.used, 1000);
    }
    EXPECT_GT(grouped.accuracy.hi - grouped.accuracy.lo, 1.3 * (cases.accuracy.hi - cases.accuracy.lo));
    const MultiClassIntervals again = bootstrap_multiclass_ci(probs, truths, o, patients);
    EXPECT_EQ(again.accuracy.lo, grouped.accuracy.lo);
    // All right: every resample is perfect.
    const MultiClassIntervals perfect = bootstrap_multiclass_ci({{0.9, 0.1}, {0.2, 0.8}}, {0, 1}, o);
    EXPECT_EQ(perfect.accuracy.lo, 1.0);
    EXPECT_EQ(perfect.accuracy.hi, 1.0);
    const nlohmann::json j = multiclass_json(m, {"a", "b", "c"}, &grouped);
    ASSERT_TRUE(j.contains("ci95"));
    EXPECT_DOUBLE_EQ(j["ci95"]["accuracy"][0].get<double>(), grouped.accuracy.lo);
    test::expect_usage_error([&] { bootstrap_multiclass_ci(probs, truths, o, {"x"}); }, {"1 group ids for 60 cases"});
}

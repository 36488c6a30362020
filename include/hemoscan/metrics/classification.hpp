#pragma once
// Metrics for binary (per label), multi-label (RSNA) and multi-class classification.
//
// Inputs are `scores` (any real number for the rank metrics; probabilities in [0, 1] for Brier,
// ECE and log loss) and `truths` (0/1), one per case, same order. Conventions shared by all:
// - A score >= threshold is a positive prediction.
// - Errors: sizes that disagree -> UsageError (the caller passed inconsistent arguments); empty
//   input, a truth other than 0/1, a NaN/infinite score, a probability outside [0, 1] where one
//   is needed, or a metric that is undefined for the data (AUC with one class only, PR with no
//   positive) -> InputError. Messages start with the function's name and give the offending index.
//   We throw rather than return NaN so that an undefined metric never slips silently into an
//   average; label_metrics_json() checks first and writes null instead.
// - Ratios whose denominator is 0 (precision with no positive prediction, ...) are defined as 0.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hemoscan/metrics/bootstrap.hpp"

namespace hemoscan {

// ---- Rank metrics -------------------------------------------------------------------------------

// Area under the ROC curve by the Mann-Whitney U statistic with average ranks for ties (a tied
// positive/negative pair counts 1/2). Needs both classes (InputError otherwise).
double roc_auc(const std::vector<double>& scores, const std::vector<int>& truths);

// ROC points, one per distinct score taken as threshold in decreasing order, preceded by (0, 0)
// at threshold +infinity and ending at (1, 1). Every distinct score is kept (no point dropping),
// so the trapezoid area under (fpr, tpr) equals roc_auc(). Needs both classes.
struct RocCurve {
    std::vector<double> fpr, tpr, thresholds;
};
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int>& truths);

// Precision-recall points by decreasing threshold, as scikit-learn's precision_recall_curve but in
// increasing-recall order: starts with (recall 0, precision 1) at threshold +infinity, then one
// point per distinct score down to the first threshold that reaches recall 1. Needs a positive.
struct PrCurve {
    std::vector<double> precision, recall, thresholds;
};
PrCurve pr_curve(const std::vector<double>& scores, const std::vector<int>& truths);

// Average precision, step-wise (no interpolation) as scikit-learn's average_precision_score:
// sum over distinct thresholds of (R_k - R_{k-1}) * P_k. Needs a positive.
double pr_auc(const std::vector<double>& scores, const std::vector<int>& truths);

// ---- Calibration and loss (scores are probabilities in [0, 1]) ---------------------------------

// Mean of (p - y)^2.
double brier_score(const std::vector<double>& probabilities, const std::vector<int>& truths);

// Expected calibration error with `bins` equal-width bins: bin k holds p in [k/bins, (k+1)/bins),
// the last bin also holds p = 1. ECE = sum over non-empty bins of n_k/n * |mean(p) - mean(y)|.
double expected_calibration_error(const std::vector<double>& probabilities, const std::vector<int>& truths,
                                  int bins = 10);

// Binary cross-entropy, mean over cases, probabilities clipped to [eps, 1 - eps].
double log_loss(const std::vector<double>& probabilities, const std::vector<int>& truths, double eps = 1e-7);

// True when the label set is the RSNA one, i.e. contains "any" (case-insensitive): only then is
// rsna_weighted_log_loss() the competition metric.
bool has_rsna_any_label(const std::vector<std::string>& label_names);

// RSNA 2019 weighted multi-label log loss. probabilities[i][l] and truths[i][l] hold case i,
// label l (label order = label_names). Weight 2 for "any", 1 for every other label (the five
// subtypes); per case sum_l w_l * logloss_il / sum_l w_l, then the mean over cases; eps-clipped as
// log_loss(). UsageError when label_names has no "any" or row widths differ from label_names.
double rsna_weighted_log_loss(const std::vector<std::vector<double>>& probabilities,
                              const std::vector<std::vector<int>>& truths, const std::vector<std::string>& label_names,
                              double eps = 1e-7);

// ---- Threshold metrics --------------------------------------------------------------------------

struct Confusion {
    long tn = 0, fp = 0, fn = 0, tp = 0;

    long n() const { return tn + fp + fn + tp; }
    long positives() const { return tp + fn; }
    // 0/0 is defined as 0 for all ratios below (e.g. precision when nothing is predicted positive).
    double accuracy() const;
    double precision() const;  // tp / (tp + fp)
    double recall() const;     // tp / (tp + fn), = sensitivity
    double sensitivity() const { return recall(); }
    double specificity() const;  // tn / (tn + fp)
    double f1() const;           // 2 tp / (2 tp + fp + fn)
};

// Counts at a threshold: score >= threshold -> predicted positive.
Confusion confusion_at(const std::vector<double>& scores, const std::vector<int>& truths, double threshold);
// Counts from given 0/1 decisions (e.g. each case decided by its own fold's threshold).
Confusion confusion_of(const std::vector<int>& truths, const std::vector<int>& decisions);

// The threshold maximising Youden's J = tpr - fpr among the distinct scores (each taken as
// "score >= t"); ties go to the higher threshold. Needs both classes. Choose it on validation
// data and reuse it on test data.
double youden_threshold(const std::vector<double>& scores, const std::vector<int>& truths);

// Youden's J with a margin: all thresholds in the gap between two neighbouring distinct scores
// classify alike, so instead of the highest J-optimal score this returns a point inside a J-optimal
// gap: its middle, in logit space for probabilities (linear otherwise). On small validation sets with
// separated classes the highest optimal score sits right at the lowest positive and generalises
// poorly; the midpoint is the max-margin choice.
// Without `prior` the gap is the highest J-optimal one. With `prior` (the model's own balanced
// decision point: 0.5 for a class-weighted loss, the training prevalence without weights) the gap
// nearest the prior wins, and a prior inside it is returned as is: validation then cannot tell the
// prior from the best threshold, and on a few dozen images the place of the gap's middle is noise.
double youden_margin_threshold(const std::vector<double>& scores, const std::vector<int>& truths,
                               std::optional<double> prior = std::nullopt);

// ---- Bootstrap ----------------------------------------------------------------------------------

// Percentile bootstrap CI of roc_auc(): draws cases with replacement (or, when `groups` is not
// empty, one group id per case, e.g. the patient: draws whole groups with replacement, so that a
// patient's slices stay together). Resamples with a single class are skipped. Percentiles are
// linearly interpolated (numpy's default). Deterministic for a given seed. The original data must
// hold both classes.
ConfidenceInterval bootstrap_auc_ci(const std::vector<double>& scores, const std::vector<int>& truths,
                                    const BootstrapOptions& options = {}, const std::vector<std::string>& groups = {});

// ---- Per-label report ---------------------------------------------------------------------------

struct LabelReportOptions {
    // Operating threshold for the confusion counts and derived metrics. Unset means Youden's J on
    // these same data: fine for validation, but on test data pass the threshold chosen on
    // validation data.
    std::optional<double> threshold;
    BootstrapOptions bootstrap;
    std::vector<std::string> groups;  // patient id per case for the bootstrap; empty: per case
};

// JSON object for one label:
//   {"auc", "auc_ci95": [lo, hi], "pr_auc", "accuracy", "sensitivity", "specificity", "precision",
//    "f1", "brier", "ece", "threshold", "confusion": [[tn, fp], [fn, tp]], "n", "positives"}
// Values that are undefined for the data are null: auc, auc_ci95 (and a Youden threshold, which
// then falls back to 0.5) with a single class, pr_auc with no positive. `scores` must be
// probabilities (Brier, ECE).
nlohmann::json label_metrics_json(const std::vector<double>& scores, const std::vector<int>& truths,
                                  const LabelReportOptions& options = {});

// ---- Multi-class --------------------------------------------------------------------------------

struct MultiClassMetrics {
    std::vector<std::vector<long>> confusion;  // K x K, rows = truth, columns = prediction
    double accuracy = 0;
    std::vector<double> precision, recall, f1;  // per class; 0/0 -> 0
    double macro_f1 = 0;                        // unweighted mean of f1 over the K classes
    double macro_precision = 0, macro_recall = 0;  // unweighted means over the K classes
};

// K x K confusion counts from class indices in [0, classes).
std::vector<std::vector<long>> confusion_matrix(const std::vector<int>& truths, const std::vector<int>& predicted,
                                                int classes);

// Metrics from class probabilities (probabilities[i] has K entries; the prediction is the argmax,
// the lower index on ties) and true class indices in [0, K).
MultiClassMetrics multiclass_metrics(const std::vector<std::vector<double>>& probabilities,
                                     const std::vector<int>& truths);
// The same figures from a K x K confusion matrix (rows = truth).
MultiClassMetrics metrics_of_confusion(std::vector<std::vector<long>> confusion);

// {"accuracy", "macro_f1", "macro_precision", "macro_recall", "confusion": [[...]], "classes": {name: {"precision", "recall", "f1",
// "support"}}}. class_names must have K entries (UsageError otherwise).
// Percentile-bootstrap intervals of the summary figures: cases (or, with `groups`, all cases of one
// patient together) drawn with replacement, the argmax confusion recounted per resample.
struct MultiClassIntervals {
    ConfidenceInterval accuracy, macro_precision, macro_recall, macro_f1;
};
MultiClassIntervals bootstrap_multiclass_ci(const std::vector<std::vector<double>>& probabilities,
                                            const std::vector<int>& truths, const BootstrapOptions& options,
                                            const std::vector<std::string>& groups = {});

// With `intervals`: "ci95": {"accuracy": [lo, hi], "macro_precision", "macro_recall", "macro_f1"}.
nlohmann::json multiclass_json(const MultiClassMetrics& metrics, const std::vector<std::string>& class_names,
                               const MultiClassIntervals* intervals = nullptr);

}  // namespace hemoscan

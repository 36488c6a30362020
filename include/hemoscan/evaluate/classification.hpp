#pragma once
// Metrics, prediction tables and plots shared by train (validation), evaluate and cv.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hemoscan/data/dataset.hpp"

namespace hemoscan {

class Predictor;

// Probabilities and truths for a set of cases, one row per case.
struct PredictionTable {
    std::vector<std::string> label_names;
    bool multiclass = false;
    std::vector<std::string> paths, patients;
    std::vector<std::vector<double>> probs;  // case x label
    std::vector<std::vector<int>> truths;    // case x label (0/1; one-hot for multi-class)
    std::vector<int> folds;                  // optional: fold of each case (cv)
    // Optional per-case decisions (cv: each case decided by its own fold's threshold); when empty,
    // decisions come from the thresholds passed to the writers.
    std::vector<std::vector<int>> decisions;

    void add(const DatasetItem& item, const std::vector<double>& p, int fold = -1);
    size_t size() const { return probs.size(); }
};

// Per label threshold: Youden's J with a margin (youden_margin_threshold), kept at priors[l] (the
// model's balanced decision point) where validation cannot tell that apart from the best; 0.5 where a
// label has a single class. Empty priors: the middle of the highest optimal gap.
std::vector<double> choose_thresholds(const PredictionTable& table, const std::vector<double>& priors = {});

// metrics.json: {"n", "labels": {name: {auc, auc_ci95, accuracy, sensitivity, specificity, precision,
// f1, threshold, confusion, ...}}, "macro_auc", "rsna_weighted_log_loss" (RSNA label sets),
// "multiclass": {...} (class folders)}. Bootstrap resamples patients.
nlohmann::json compute_metrics(const PredictionTable& table, const std::vector<double>& thresholds,
                               std::uint64_t seed = 0);

// The threshold figures of every label (accuracy, sensitivity, specificity, precision, f1, confusion)
// recomputed from table.decisions, where each case was decided by its own fold's thresholds (cv).
// AUC, intervals, Brier and calibration stay those of the pooled scores. Multi-class or no decisions:
// nothing changes.
void apply_case_decisions(nlohmann::json& metrics, const PredictionTable& table);

// predictions.csv: path, patient, [fold,] then per label: truth, probability, decision.
void write_predictions_csv(const std::filesystem::path& file, const PredictionTable& table,
                           const std::vector<double>& thresholds);

// roc.png, pr.png and confusion.png (first label, or the class confusion matrix) in `dir`.
void write_metric_plots(const std::filesystem::path& dir, const PredictionTable& table,
                        const std::vector<double>& thresholds);

class ProcessGroup;

struct EvaluateOptions {
    double threshold = -1;  // >= 0 overrides the model's thresholds
    // Distributed (issue 31): each rank predicts its contiguous block of the items (shard_range); the
    // probabilities are gathered in input order and rank 0 alone writes. Null: one process.
    ProcessGroup* group = nullptr;
    int batch = 32;
    int workers = 2;
    std::uint64_t seed = 0;
    std::function<void(size_t done, size_t total)> progress;
};

// Runs the model over every item of the dataset and writes metrics.json, predictions.csv and the
// plots into `out`. The dataset's labels must match the model's (by name; InputError otherwise).
nlohmann::json evaluate_dataset(Predictor& predictor, const Dataset& dataset, const std::filesystem::path& out,
                                const EvaluateOptions& options = {});

// Probabilities for the given dataset items through the predictor (batched, loader threads). With
// options.group, predict_items_sharded.
PredictionTable predict_items(Predictor& predictor, const Dataset& dataset, const std::vector<size_t>& indices,
                              const EvaluateOptions& options = {});

// predict_items as `group`: each rank predicts its contiguous block of `indices` (shard_range); every rank
// gets the whole table in the order of `indices` (the probabilities gathered).
PredictionTable predict_items_sharded(Predictor& predictor, const Dataset& dataset, const std::vector<size_t>& indices,
                                      ProcessGroup& group, const EvaluateOptions& options = {});

}  // namespace hemoscan

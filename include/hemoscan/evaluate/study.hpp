#pragma once
// Two-level evaluation of ordered data (issue 26): every slice, and every study (a study is positive
// for a label when any of its slices is). Shared by `train --task study`, `cv --task study` and
// `evaluate` of a study model. Free of LibTorch.
#include <cstdint>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "hemoscan/data/dataset.hpp"
#include "hemoscan/evaluate/classification.hpp"

namespace hemoscan {

// Probabilities of the slices of some studies: studies[s] are dataset items in slice order, probs[s]
// one row per item; study_probs[s] one row per study.
struct StudyProbs {
    std::vector<std::vector<size_t>> studies;
    std::vector<std::vector<std::vector<double>>> probs;
    std::vector<std::vector<double>> study_probs;
    std::vector<int> folds;  // optional, per study (cv)
};

// The study rule of a slice model alone: per label the highest slice.
std::vector<std::vector<double>> max_over_slices(const std::vector<std::vector<std::vector<double>>>& probs);

struct StudyTables {
    PredictionTable slices;   // one row per slice
    PredictionTable studies;  // one row per study: path = the study, truth = any slice positive
};
StudyTables study_tables(const Dataset& ds, const StudyProbs& p);

// {"slice": compute_metrics(slices), "study": compute_metrics(studies), "rsna_log_loss": the RSNA
// weighted log loss over the slices (null without an "any" label), "n_studies"}. Slices are decided by
// `thresholds`, studies by `study_thresholds` (empty: the same).
nlohmann::json two_level_metrics(const StudyTables& t, const std::vector<double>& thresholds, std::uint64_t seed,
                                 const std::vector<double>& study_thresholds = {});

// Writes predictions.csv (slices), study_predictions.csv, and the slice-level plots into `dir`.
void write_two_level_outputs(const std::filesystem::path& dir, const StudyTables& t,
                             const std::vector<double>& thresholds, const std::vector<double>& study_thresholds);

// Per-item probabilities (items[r] has probs[r]) grouped into the dataset's studies that hold them,
// in slice order; studies in the dataset's order.
StudyProbs group_studies(const Dataset& ds, const std::vector<size_t>& items,
                         const std::vector<std::vector<double>>& probs);

// Decisions of every row by the thresholds of its fold (table.folds) into table.decisions.
void decide_by_fold(PredictionTable& table, const std::vector<std::vector<double>>& thresholds_by_fold);

// The slice model's probabilities of `items` (one pass) grouped into the dataset's studies that hold
// them, in slice order. The data must be ordered (InputError naming it otherwise). With options.group the
// items are split over the ranks (predict_items) and every rank gets all of them.
StudyProbs predict_study_slices(Predictor& predictor, const Dataset& ds, const std::vector<size_t>& items,
                                const EvaluateOptions& options = {});

// `evaluate` of a study model: the slice model over every item, the study model over every study;
// metrics.json holds both levels of the study model and, under "stage1", of the slice model alone
// (study = its highest slice). Writes the outputs of write_two_level_outputs and metrics.json to `out`.
// The same from the slice model's probabilities of some studies (stage1.probs) already at hand.
// With options.group (issue 31): evaluate_studies shards the studies (each rank runs the slice model
// over the slices of its contiguous block, shard_range), gathers the probabilities in study order, and
// every rank computes the metrics from the whole as one process does; rank 0 alone writes (in
// evaluate_study_probs too).
nlohmann::json evaluate_study_probs(Predictor& predictor, const Dataset& ds, StudyProbs stage1,
                                    const std::filesystem::path& out, const EvaluateOptions& options = {});
nlohmann::json evaluate_studies(Predictor& predictor, const Dataset& ds, const std::filesystem::path& out,
                                const EvaluateOptions& options = {});

}  // namespace hemoscan

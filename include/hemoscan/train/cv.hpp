#pragma once
// Cross-validation: patient-grouped stratified folds; each fold trains on the other folds (with an
// inner grouped holdout for early stopping and the threshold), predicts its own fold; the
// out-of-fold predictions are pooled into one honest estimate.
#include <nlohmann/json.hpp>

#include "hemoscan/train/trainer.hpp"

namespace hemoscan {

struct CvCallbacks {
    std::function<void(int fold, int folds)> fold_start;
    TrainCallbacks train;
};

// options.folds = K (>= 2); runs to options.out/fold_<k>/ and writes options.out/metrics.json
// (pooled, plus "folds": per-fold metrics and "summary": mean and sd), predictions.csv (with the
// fold of each case), split.csv, config.json and the ROC/PR/confusion plots.
nlohmann::json cross_validate(const TrainOptions& options, const CvCallbacks& callbacks = {});

// The out-of-fold outputs of a cross-validation: every case's probabilities from the fold model that
// did not see it.
struct CvResult {
    nlohmann::json metrics;                   // what metrics.json holds
    std::vector<size_t> items;                // dataset items, in pooled order
    std::vector<std::vector<double>> probs;   // per item
    std::vector<int> folds;                   // per item: its fold
};
// cross_validate() over some items of the data only (all when `items` is empty); folds are made over
// those items (grouped by patient, stratified).
// `group`: the process group of options.dist to train every fold in (null: joined here when options.dist
// is distributed).
CvResult cross_validate_items(const TrainOptions& options, const std::vector<size_t>& items,
                              const CvCallbacks& callbacks = {}, ProcessGroup* group = nullptr);

}  // namespace hemoscan

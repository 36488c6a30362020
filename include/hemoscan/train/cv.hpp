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

}  // namespace hemoscan

#pragma once
// Study-level detection (issue 26), as the RSNA 2019 winners did it: stage 1 a slice classifier (with
// neighbouring slices as context when asked), stage 2 a sequence model over the ordered slices of a
// study that reads stage 1's per-slice outputs (models/study_model.hpp). Stage 2 learns from
// out-of-fold stage-1 outputs, so that it does not learn stage 1's overfit to its own training slices.
// Free of LibTorch.
#include <nlohmann/json.hpp>

#include "hemoscan/train/cv.hpp"
#include "hemoscan/train/trainer.hpp"

namespace hemoscan {

// `train --task study` into options.out (RUN):
//   RUN/stage1_oof/  a cross-validation of stage 1 over the training studies (options.stage1_folds):
//                    every training slice's output from a model that did not see it
//   RUN/stage1/      stage 1 trained on all training studies (its validation part: the run's)
//   RUN/stage2/      the study model's run (log.csv, curves.png)
//   RUN/model.pt     one file: the slice model and the study model (serialize.hpp, save_study_model)
//   RUN/metrics.json validation at both levels, stage 1 alone under "stage1"; predictions.csv (slices),
//                    study_predictions.csv, config.json, split.csv
// With options.stage1 (a slice model file) no stage 1 is trained; its outputs on the training studies
// are used as they are (a warning when it was trained on this data: they are in-sample).
// The data must be ordered slices of studies with multi-label (sigmoid) labels (InputError otherwise).
TrainResult train_study(const TrainOptions& options, const CvCallbacks& callbacks = {});

// `cv --task study`: a patient-grouped K-fold cross-validation of stage 1 (OUT/stage1, as `cv`), then
// for each fold a study model trained on the out-of-fold stage-1 outputs of the other folds
// (OUT/stage2/fold_<k>) and applied to its fold: stacking on the same folds, so that K slice models
// are trained instead of K * (K + 1). OUT/metrics.json: both levels of stage 1 + stage 2, pooled over
// the folds ("slice", "study", "rsna_log_loss"), stage 1 alone under "stage1", per-fold figures under
// "folds"; predictions.csv, study_predictions.csv, plots.
nlohmann::json cross_validate_study(const TrainOptions& options, const CvCallbacks& callbacks = {});

}  // namespace hemoscan

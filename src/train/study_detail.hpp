#pragma once
// Stage 2 of the study task (train/study.hpp): training the study model on stage-1 outputs, and its
// outputs. Private to src/train and its tests (includes LibTorch).
#include <filesystem>
#include <memory>
#include <vector>

#include "hemoscan/evaluate/study.hpp"
#include "hemoscan/models/study_model.hpp"
#include "hemoscan/train/trainer.hpp"

namespace hemoscan::train_detail {

struct Stage2 {
    std::shared_ptr<StudyModelImpl> model;  // the best epoch's weights, eval mode
    std::vector<double> thresholds;         // per label, chosen on the validation studies' slices
    std::vector<double> study_thresholds;   // per label, chosen on the validation studies
    int best_epoch = -1, epochs_run = 0;
};

// Trains a study model (options: study_epochs, study_lr, study_hidden, seed, grad_clip, optimizer) on
// `train` (stage-1 outputs of training studies; labels from `ds`) into the run folder `dir` (replaced),
// choosing the epoch (lowest validation loss) and the thresholds on `val` (slices and studies apart).
// `val` may be empty: the last epoch, thresholds at the training prevalence.
Stage2 train_stage2(const TrainOptions& o, const Dataset& ds, const StudyProbs& train, const StudyProbs& val,
                    const std::filesystem::path& dir, const TrainCallbacks& cb = {});

// The study model's probabilities of every slice and study of `p`, in a copy of `p`.
StudyProbs stage2_outputs(StudyModelImpl& model, const StudyProbs& p);

}  // namespace hemoscan::train_detail

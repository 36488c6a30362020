#pragma once
// Options shared by `train` and `cv`, and the progress display of training.
#include <CLI/CLI.hpp>

#include <memory>

#include "hemoscan/train/trainer.hpp"
#include "progress.hpp"

namespace hemoscan::cli {

struct TrainArgs {
    TrainOptions options;
    std::string labels;    // comma-separated
    std::string augment = "on";
    std::string tta = "on";
    double dropout = -1;   // < 0: architecture default
    std::string normalization;  // empty: unit, or imagenet with --pretrained
    int freeze_epochs = -1;        // < 0: the library's default (1 with --pretrained, else 0)
    double backbone_lr_mult = -1;  // < 0: the library's default (0.1 with --pretrained, else 1)
};

void add_train_options(CLI::App* app, TrainArgs& args, bool folds_for_cv);
// Turns the parsed strings into TrainOptions (labels list, augment on/off, dropout).
TrainOptions finish_train_options(const TrainArgs& args);

// Progress bars for epochs plus one summary line per epoch.
// A bar per epoch, then the epoch's log row: validation AUC (classifier) or Dice (segment = true).
class TrainProgress {
public:
    explicit TrainProgress(bool segment = false) : segment_(segment) {}
    TrainCallbacks callbacks();

private:
    std::unique_ptr<ProgressBar> bar_;
    bool segment_;
};

}  // namespace hemoscan::cli

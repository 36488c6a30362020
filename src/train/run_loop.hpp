#pragma once
// The run-folder skeleton both trainers share (classifier, segmenter): a new or resumed run folder,
// config.json and split.csv, the epoch loop (learning rate, per-epoch seeds, best epoch, early
// stopping, plateau schedule, checkpoints with state.json as the commit point), log.csv, curves.png
// and the end of a run. What differs between tasks (an epoch of training, validation, writing a model
// file) is a TrainingTask.
// Private to src/train (includes LibTorch).
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hemoscan/train/schedule.hpp"
#include "hemoscan/dist/process_group.hpp"
#include "hemoscan/train/trainer.hpp"

namespace hemoscan::train_detail {

// The intra-op threads of a run (o.threads, 0 = all cores), set for LibTorch; returns the number.
int use_threads(const TrainOptions& o);

// A run folder. New: refused when it already holds a run. Resumed: its state.json must exist, come
// from the same data (fingerprint) and not be finished.
class RunFolder {
public:
    RunFolder(const TrainOptions& o, bool resume, const std::string& fingerprint);
    const std::filesystem::path& path() const { return run_; }
    std::filesystem::path operator/(const std::string& name) const { return run_ / name; }
    bool resumed() const { return resume_; }
    const std::string& fingerprint() const { return fingerprint_; }
    const nlohmann::json& state() const { return state_; }
    void set_state(nlohmann::json state) { state_ = std::move(state); }
    // Creates the folder; a new run also gets config.json (what every run records, plus `task_fields`)
    // and split.csv (`write_split`).
    void start(const TrainOptions& o, const nlohmann::json& task_fields,
               const std::function<void(const std::filesystem::path&)>& write_split) const;

private:
    std::filesystem::path run_;
    bool resume_;
    std::string fingerprint_;
    nlohmann::json state_ = nlohmann::json::object();
};

// Distributed training: a rank other than 0 writes nothing into the run folder. It runs in a scratch
// folder of its own (a copy of the run folder's files when resuming, so that it takes up the same
// checkpoint: the run folder must be on a file system every rank sees), removed when this goes.
class ScratchFolder {
public:
    ScratchFolder() = default;
    ~ScratchFolder();
    ScratchFolder(const ScratchFolder&) = delete;
    ScratchFolder& operator=(const ScratchFolder&) = delete;
    // The folder to use instead of `run` for rank `rank`.
    std::filesystem::path take_over(const std::filesystem::path& run, bool resume, int rank);

private:
    std::filesystem::path path_;
};

// One epoch's training, as the task reports it.
struct EpochStats {
    double loss = 0;  // mean over the items seen (NaN when none)
    size_t seen = 0;  // items (images, slices)
};

// One epoch's validation.
struct EpochScore {
    double monitor = 0;     // higher is better: picks the best epoch, drives early stopping and plateau
    nlohmann::json fields;  // the validation fields of the epoch's log row (null for NaN)
};

// The task-specific parts of a training run.
class TrainingTask {
public:
    virtual ~TrainingTask() = default;
    virtual size_t batches_per_epoch() const = 0;
    // One epoch of training (learning rate and seeds are set, the model is in training mode).
    virtual EpochStats train_epoch(int epoch, const TrainCallbacks& cb) = 0;
    // Validation after an epoch; the model then holds the weights that the epoch keeps (best.pt).
    virtual EpochScore validate(int epoch, const EpochStats& train) = 0;
    virtual void save(const std::filesystem::path& file) = 0;  // the model's weights as a model file
    virtual void load(const std::filesystem::path& file) = 0;  // weights from a checkpoint
    // After best.pt, before the checkpoint of the training weights: more state.json fields (and files,
    // named by extra_files()). The classifier's weight average lives here.
    virtual nlohmann::json checkpoint_extra(int epoch, bool improved) { return nlohmann::json::object(); }
    virtual std::vector<std::string> extra_files() const { return {}; }
};

// log.csv: epoch, `columns` (6 decimals), seconds, `rate`, then `group_prefix`<name> for each of
// `group_names` from the row's `group` object.
struct LogLayout {
    std::vector<std::string> columns;
    std::string rate;
    std::string group, group_prefix;
    std::vector<std::string> group_names;
};

// curves.png: the losses, and beside them the validation `series` (name, row key) on a unit axis.
struct CurveLayout {
    std::string title, y_label;
    std::vector<std::pair<std::string, std::string>> series;
};

class FineTune;

class EpochLoop {
public:
    // fine_tune: head-only epochs and per-group learning rates (null: one rate for all).
    EpochLoop(RunFolder& folder, const TrainOptions& o, torch::nn::Module& model, torch::optim::Optimizer& opt,
              LogLayout log, CurveLayout curves, const FineTune* fine_tune = nullptr);
    // A resumed run: history, stopping and schedule state, the checkpoint's weights and the optimizer.
    void restore(TrainingTask& task);
    // The epochs from the first not yet done; returns the number of epochs run in total.
    int run(TrainingTask& task, const TrainCallbacks& cb);
    const nlohmann::json& history() const { return history_; }
    int best_epoch() const { return stopper_.best_epoch(); }
    const nlohmann::json& best_row() const;
    // The run is complete: curves.png; the checkpoints and best.pt go, state.json is marked finished.
    void finish(const TrainingTask& task);

private:
    void checkpoint(TrainingTask& task, int epoch, bool improved);

    RunFolder& folder_;
    const TrainOptions& o_;
    torch::nn::Module& model_;
    torch::optim::Optimizer& opt_;
    const FineTune* fine_tune_;
    LogLayout log_;
    CurveLayout curves_;
    ScheduleOptions schedule_options_;
    LrSchedule schedule_;
    EarlyStopping stopper_;
    nlohmann::json history_ = nlohmann::json::array();
    int start_epoch_ = 0;
};

// "Precise BN": BatchNorm running statistics recomputed as a plain average over the batches that
// `feed` runs through the model (un-augmented training data) with the epoch's final weights. With few
// batches per epoch the exponential running averages lag behind the weights and eval-mode outputs
// swing from epoch to epoch; the recomputed statistics match what the model sees at inference.
// The BatchNorm layers in `keep` (frozen by fine-tuning) keep their statistics.
// `group` (distributed): each rank feeds its share of the batches; the ranks' averages are then combined
// weighted by their batch counts, which is the average over all the batches one process would feed.
void recalibrate_batchnorm(torch::nn::Module& model, const std::function<void()>& feed,
                           const std::vector<torch::nn::Module*>& keep = {}, ProcessGroup* group = nullptr);

// The row value of a number: null for NaN.
nlohmann::json json_number(double v);

}  // namespace hemoscan::train_detail

#pragma once
// Learning-rate schedules and early stopping: plain arithmetic, no LibTorch, so they are easy to test.
#include <string>

namespace hemoscan {

enum class ScheduleKind { Constant, Cosine, Step, Plateau };
ScheduleKind parse_schedule(const std::string& name);  // constant, cosine, step, plateau
const char* to_string(ScheduleKind kind);

struct ScheduleOptions {
    ScheduleKind kind = ScheduleKind::Cosine;
    double base_lr = 1e-3;
    int warmup_epochs = 1;       // linear warm-up from base_lr / 10 (cosine and step)
    int total_epochs = 30;
    double min_lr_ratio = 0.01;  // cosine floor: base_lr * ratio
    int step_size = 10;          // step: multiply by gamma every step_size epochs
    double gamma = 0.1;
    int plateau_patience = 3;    // plateau: multiply by gamma after this many epochs without improvement
    double plateau_factor = 0.5;
};

// The learning rate for each epoch. Cosine/step/constant are functions of the epoch; plateau keeps
// state fed by observe().
class LrSchedule {
public:
    explicit LrSchedule(ScheduleOptions options) : o_(options), plateau_lr_(options.base_lr) {}
    double lr(int epoch) const;          // 0-based epoch
    void observe(double metric);         // higher is better (validation AUC); used by plateau
    double plateau_lr() const { return plateau_lr_; }
    void restore(double plateau_lr, double best, int bad_epochs) {
        plateau_lr_ = plateau_lr;
        best_ = best;
        bad_ = bad_epochs;
    }
    double best() const { return best_; }
    int bad_epochs() const { return bad_; }

private:
    ScheduleOptions o_;
    double plateau_lr_;
    double best_ = -1e300;
    int bad_ = 0;
};

// Stops when the monitored metric (higher is better) has not improved by more than min_delta for
// `patience` epochs. patience <= 0 never stops.
class EarlyStopping {
public:
    EarlyStopping(int patience, double min_delta = 1e-4) : patience_(patience), min_delta_(min_delta) {}
    // Returns true when this value is a new best.
    bool update(double value);
    bool should_stop() const { return patience_ > 0 && bad_ >= patience_; }
    double best() const { return best_; }
    int best_epoch() const { return best_epoch_; }
    int bad_epochs() const { return bad_; }
    void restore(double best, int best_epoch, int bad, int epochs_seen) {
        best_ = best;
        best_epoch_ = best_epoch;
        bad_ = bad;
        seen_ = epochs_seen;
    }

private:
    int patience_;
    double min_delta_;
    double best_ = -1e300;
    int best_epoch_ = -1;
    int bad_ = 0;
    int seen_ = 0;
};

}  // namespace hemoscan

#include "hemoscan/train/schedule.hpp"

#include <algorithm>
#include <cmath>

#include "hemoscan/error.hpp"

namespace hemoscan {

ScheduleKind parse_schedule(const std::string& name) {
    if (name == "constant") return ScheduleKind::Constant;
    if (name == "cosine") return ScheduleKind::Cosine;
    if (name == "step") return ScheduleKind::Step;
    if (name == "plateau") return ScheduleKind::Plateau;
    throw UsageError("unknown LR schedule '" + name + "' (constant, cosine, step, plateau)");
}

const char* to_string(ScheduleKind kind) {
    switch (kind) {
        case ScheduleKind::Constant: return "constant";
        case ScheduleKind::Cosine: return "cosine";
        case ScheduleKind::Step: return "step";
        case ScheduleKind::Plateau: return "plateau";
    }
    return "?";
}

double LrSchedule::lr(int epoch) const {
    const double base = o_.base_lr;
    if (o_.kind == ScheduleKind::Plateau) return plateau_lr_;
    if (o_.kind == ScheduleKind::Constant) return base;
    // Linear warm-up from base/10 to base over warmup_epochs: large first steps on a fresh network
    // with BatchNorm are unstable.
    if (epoch < o_.warmup_epochs) {
        double t = static_cast<double>(epoch + 1) / static_cast<double>(o_.warmup_epochs + 1);
        return base * (0.1 + 0.9 * t);
    }
    if (o_.kind == ScheduleKind::Step) {
        int steps = std::max(0, epoch - o_.warmup_epochs) / std::max(1, o_.step_size);
        return base * std::pow(o_.gamma, steps);
    }
    // Cosine from base (end of warm-up) to base * min_lr_ratio at the last epoch.
    int span = std::max(1, o_.total_epochs - o_.warmup_epochs - 1);
    double t = std::min(1.0, static_cast<double>(epoch - o_.warmup_epochs) / static_cast<double>(span));
    double floor = base * o_.min_lr_ratio;
    return floor + (base - floor) * 0.5 * (1.0 + std::cos(M_PI * t));
}

void LrSchedule::observe(double metric) {
    if (metric > best_ + 1e-4) {
        best_ = metric;
        bad_ = 0;
        return;
    }
    if (++bad_ >= o_.plateau_patience) {
        plateau_lr_ *= o_.plateau_factor;
        bad_ = 0;
    }
}

bool EarlyStopping::update(double value) {
    ++seen_;
    if (value > best_ + min_delta_) {
        best_ = value;
        best_epoch_ = seen_ - 1;
        bad_ = 0;
        return true;
    }
    ++bad_;
    return false;
}

}  // namespace hemoscan

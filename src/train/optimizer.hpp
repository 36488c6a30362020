#pragma once
// The optimizer and learning-rate schedule of a run, shared by the classifier and segmenter trainers.
// Private to src/train (includes LibTorch).
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "hemoscan/train/schedule.hpp"
#include "hemoscan/train/trainer.hpp"

namespace hemoscan::train_detail {

// Adam or AdamW (o.optimizer) with o.lr and o.weight_decay.
inline std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o,
                                                               const std::vector<torch::Tensor>& params) {
    if (o.optimizer == "adam") {
        return std::make_unique<torch::optim::Adam>(params,
                                                    torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
    }
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
}

inline void set_learning_rate(torch::optim::Optimizer& opt, double lr) {
    for (auto& g : opt.param_groups()) g.options().set_lr(lr);
}

// o.schedule over o.epochs from o.lr; at most epochs - 1 warm-up epochs.
inline ScheduleOptions schedule_options(const TrainOptions& o) {
    ScheduleOptions so;
    so.kind = parse_schedule(o.schedule);
    so.base_lr = o.lr;
    so.warmup_epochs = std::min(o.warmup_epochs, std::max(0, o.epochs - 1));
    so.total_epochs = o.epochs;
    return so;
}

}  // namespace hemoscan::train_detail

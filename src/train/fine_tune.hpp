#pragma once
// Fine-tuning (issue 27): a model split into backbone and head, head-only epochs first, a lower
// learning rate for the backbone, and optionally frozen BatchNorm statistics.
// Private to src/train (includes LibTorch).
#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hemoscan/train/trainer.hpp"

namespace hemoscan::train_detail {

// The resolved settings: unset options take the defaults for pre-trained weights (`pretrained`: 1
// head-only epoch, backbone at 0.1 x the rate) or none (0 and 1).
struct FineTuneSettings {
    int freeze_epochs = 0;
    double backbone_lr_mult = 1.0;
    bool freeze_bn = false;
    bool active() const { return freeze_epochs > 0 || backbone_lr_mult != 1.0 || freeze_bn; }
    nlohmann::json to_json() const;
};
FineTuneSettings fine_tune_settings(const TrainOptions& o);

class FineTune {
public:
    // is_head(name): whether a parameter or module name (as in named_parameters()/named_modules()) is
    // in the head; everything else is the backbone. UsageError when the settings need a split and the
    // model has no head or no backbone.
    FineTune(FineTuneSettings settings, torch::nn::Module& model, const std::function<bool(const std::string&)>& is_head,
             const std::string& model_name);

    const FineTuneSettings& settings() const { return s_; }
    // The optimizer's groups: the head, then the backbone (one group holding both when the backbone
    // trains at the head's rate), with the optimizer options `o` gives at each group's rate.
    std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o) const;
    // Sets each group's rate for the epoch's base rate `lr`.
    void set_learning_rate(torch::optim::Optimizer& opt, double lr) const;
    // After model.train() at the start of an epoch: in a head-only epoch the backbone's parameters take
    // no gradient and its BatchNorm layers keep their statistics (eval mode), as with freeze_bn always.
    void begin_epoch(int epoch) const;
    bool head_only(int epoch) const { return epoch < s_.freeze_epochs; }
    // The BatchNorm layers whose statistics stay as they are in this epoch (for recalibrate_batchnorm).
    std::vector<torch::nn::Module*> frozen_batchnorm(int epoch) const;

private:
    FineTuneSettings s_;
    std::vector<torch::Tensor> head_, backbone_;
    std::vector<torch::nn::Module*> backbone_bn_;
};

}  // namespace hemoscan::train_detail

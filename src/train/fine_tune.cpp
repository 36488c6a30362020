// Fine-tuning schedule (train/fine_tune.hpp).
#include "train/fine_tune.hpp"

#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "train/optimizer.hpp"

namespace hemoscan::train_detail {

nlohmann::json FineTuneSettings::to_json() const {
    return {{"freeze_epochs", freeze_epochs}, {"backbone_lr_mult", backbone_lr_mult}, {"freeze_bn", freeze_bn}};
}

FineTuneSettings fine_tune_settings(const TrainOptions& o) {
    // Pre-trained features are worth keeping: one epoch lets the fresh head settle before its large
    // early gradients reach the backbone, and a tenfold lower rate keeps the backbone near its weights
    // (Kornblith et al. 2019; the usual fastai/timm recipe). Without such weights there is nothing to keep.
    const bool pretrained = !o.pretrained.empty();
    FineTuneSettings s;
    s.freeze_epochs = o.freeze_epochs.value_or(pretrained ? 1 : 0);
    s.backbone_lr_mult = o.backbone_lr_mult.value_or(pretrained ? 0.1 : 1.0);
    s.freeze_bn = o.freeze_bn;
    return s;
}

FineTune::FineTune(FineTuneSettings settings, torch::nn::Module& model,
                   const std::function<bool(const std::string&)>& is_head, const std::string& model_name)
    : s_(settings) {
    for (auto& p : model.named_parameters()) (is_head(p.key()) ? head_ : backbone_).push_back(p.value());
    for (auto& m : model.named_modules("", /*include_self=*/false)) {
        if (!is_head(m.key()) && m.value()->as<torch::nn::BatchNorm2d>()) backbone_bn_.push_back(m.value().get());
    }
    if ((s_.freeze_epochs > 0 || s_.backbone_lr_mult != 1.0) && (head_.empty() || backbone_.empty())) {
        throw UsageError("model '" + model_name + "' has no separate head and backbone, so `freeze_epochs` and "
                         "`backbone_lr_mult` do not apply to it");
    }
}

std::unique_ptr<torch::optim::Optimizer> FineTune::make_optimizer(const TrainOptions& o) const {
    std::vector<std::vector<torch::Tensor>> groups{head_, backbone_};
    std::vector<double> rates{o.lr, o.lr * s_.backbone_lr_mult};
    if (s_.backbone_lr_mult == 1.0) {  // one group, as a run without fine-tuning has
        groups[0].insert(groups[0].end(), backbone_.begin(), backbone_.end());
        groups.pop_back();
        rates.pop_back();
    }
    return train_detail::make_optimizer(o, groups, rates);
}

void FineTune::set_learning_rate(torch::optim::Optimizer& opt, double lr) const {
    auto& groups = opt.param_groups();
    for (size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(g == 0 ? lr : lr * s_.backbone_lr_mult);
}

void FineTune::begin_epoch(int epoch) const {
    const bool frozen = head_only(epoch);
    // Without gradients the backbone's backward pass is skipped, and AdamW leaves a parameter without a
    // gradient untouched (no weight decay either): the backbone stays exactly as it is.
    for (const auto& p : backbone_) p.set_requires_grad(!frozen);
    for (auto* m : frozen_batchnorm(epoch)) m->eval();
    if (epoch == s_.freeze_epochs && s_.freeze_epochs > 0) {
        logger().info("epoch {}: the backbone trains from here on (at {} x the rate)", epoch + 1, s_.backbone_lr_mult);
    }
}

std::vector<torch::nn::Module*> FineTune::frozen_batchnorm(int epoch) const {
    if (s_.freeze_bn || head_only(epoch)) return backbone_bn_;
    return {};
}

}  // namespace hemoscan::train_detail

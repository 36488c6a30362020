#pragma once
// The optimizer, learning-rate schedule, checkpoints and starting weights (--init, --resume) of a run,
// shared by the classifier and segmenter trainers.
// Private to src/train (includes LibTorch).
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/train/schedule.hpp"
#include "hemoscan/train/trainer.hpp"
#include "hemoscan/util/fs.hpp"

namespace hemoscan::train_detail {

// Adam or AdamW (o.optimizer) with o.weight_decay over parameter groups, group g at rates[g].
inline std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o,
                                                               const std::vector<std::vector<torch::Tensor>>& groups,
                                                               const std::vector<double>& rates) {
    const bool adam = o.optimizer == "adam";
    std::vector<torch::optim::OptimizerParamGroup> param_groups;
    for (size_t g = 0; g < groups.size(); ++g) {
        std::unique_ptr<torch::optim::OptimizerOptions> options;
        if (adam) {
            options = std::make_unique<torch::optim::AdamOptions>(
                torch::optim::AdamOptions(rates[g]).weight_decay(o.weight_decay));
        } else {
            options = std::make_unique<torch::optim::AdamWOptions>(
                torch::optim::AdamWOptions(rates[g]).weight_decay(o.weight_decay));
        }
        param_groups.emplace_back(groups[g], std::move(options));
    }
    if (adam) {
        return std::make_unique<torch::optim::Adam>(std::move(param_groups),
                                                    torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
    }
    return std::make_unique<torch::optim::AdamW>(std::move(param_groups),
                                                 torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
}

// One group at o.lr.
inline std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o,
                                                               const std::vector<torch::Tensor>& params) {
    return make_optimizer(o, std::vector<std::vector<torch::Tensor>>{params}, {o.lr});
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

// The early-stopping and plateau-schedule fields of a run's state.json (what --resume restores).
inline nlohmann::json stopping_state(const EarlyStopping& stopper, const LrSchedule& schedule) {
    return {{"best_metric", stopper.best()},      {"best_epoch", stopper.best_epoch()},
            {"bad_epochs", stopper.bad_epochs()}, {"plateau_lr", schedule.plateau_lr()},
            {"plateau_best", schedule.best()},    {"plateau_bad", schedule.bad_epochs()}};
}

// After the new state.json is written: removes the files (named under `keys`) that it no longer names.
inline void remove_replaced_files(const std::filesystem::path& run, const nlohmann::json& old_state,
                                  const nlohmann::json& state, const std::vector<std::string>& keys) {
    for (const auto& key : keys) {
        const std::string old_file = old_state.value(key, std::string()), file = state.value(key, std::string());
        std::error_code ec;
        if (!old_file.empty() && old_file != file) std::filesystem::remove(run / old_file, ec);
    }
}

// The optimizer's state (moments, step counts), written atomically. Optimizer::save/load are virtual,
// so Adam and AdamW need no cast.
inline void save_optimizer(const std::filesystem::path& path, const torch::optim::Optimizer& opt) {
    write_atomic_with(path, [&](const std::filesystem::path& tmp) { torch::save(opt, tmp.string()); });
}
inline void load_optimizer(const std::filesystem::path& path, torch::optim::Optimizer& opt) {
    torch::load(opt, path.string());
}

// Copies the parameters and buffers of `from` into the same-named ones of `to` (resuming from a
// checkpoint that was loaded as a model of its own).
inline void copy_weights(torch::nn::Module& from, torch::nn::Module& to) {
    torch::NoGradGuard no_grad;
    auto params = from.named_parameters();
    for (auto& p : to.named_parameters()) p.value().copy_(params[p.key()]);
    auto buffers = from.named_buffers();
    for (auto& b : to.named_buffers()) b.value().copy_(buffers[b.key()]);
}

// Transfer learning (--init): copies every parameter and buffer of `from` whose name and shape match
// one of `to`; the others of `to` (an output layer for other labels, a first conv for other windows)
// keep their fresh initialisation. `from_arch`/`to_arch` are the architecture names: copying between
// different architectures would pair unrelated layers that merely share a name, so that is refused,
// as is a file that fits less than half of the new model's values. Returns what was taken, for the run's init.json.
inline nlohmann::json init_weights(const std::string& file, const std::string& from_arch, torch::nn::Module& from,
                                   const std::string& to_arch, torch::nn::Module& to) {
    if (from_arch != to_arch) {
        throw UsageError("`init` " + file + " holds a '" + from_arch + "' model; this run trains '" + to_arch +
                         "' (`model`): the weights only transfer between the same architecture");
    }
    torch::NoGradGuard no_grad;
    std::vector<std::string> copied, fresh;
    size_t values = 0, total = 0;
    auto take = [&](const torch::OrderedDict<std::string, torch::Tensor>& source,
                    torch::OrderedDict<std::string, torch::Tensor> target) {
        for (auto& t : target) {
            total += static_cast<size_t>(t.value().numel());
            const torch::Tensor* s = source.find(t.key());
            if (s && s->sizes() == t.value().sizes()) {
                t.value().copy_(*s);
                copied.push_back(t.key());
                values += static_cast<size_t>(t.value().numel());
            } else {
                fresh.push_back(t.key());
            }
        }
    };
    take(from.named_parameters(), to.named_parameters());
    take(from.named_buffers(), to.named_buffers());
    // A head for other labels or a first conv for other windows is a small part of a model; when most
    // of it would start fresh (another --width or --depth), the file is not what the user meant.
    if (2 * values < total) {
        throw UsageError("`init` " + file + ": only " + std::to_string(values) + " of this model's " +
                         std::to_string(total) + " weights fit its tensors (another `width` or `depth`?)");
    }
    std::string fresh_list;
    for (const auto& k : fresh) fresh_list += (fresh_list.empty() ? "" : ", ") + k;
    logger().info("`init` {}: {} of {} tensors taken ({} of {} values){}", file, copied.size(),
                  copied.size() + fresh.size(), values, total,
                  fresh.empty() ? std::string() : "; initialised fresh: " + fresh_list);
    return {{"file", file},
            {"tensors_taken", copied.size()},
            {"values_taken", values},
            {"values", total},
            {"fresh", fresh}};
}

// `pretrained`: a PyTorch state dict (models/pretrained.hpp) mapped onto `model` by name, its SHA-256
// checked against a torchvision-style name; refused when less than half of the model's values fit
// (the weights of another architecture). Returns what was taken, for RUN/init.json.
nlohmann::json pretrained_weights(const std::string& file, const std::string& arch, torch::nn::Module& model);

// The starting weights of a run: with o.pretrained, pretrained_weights(); with o.init on a new run, `load(o.init)` (load_model or
// load_segmenter) supplies them through init_weights and RUN/init.json records what was taken; a
// resumed run holds them in its checkpoint and returns what it recorded. Null when --init is unused.
// `pretrained_into`: the part of the model that `pretrained` weights are for (a segmenter's encoder),
// or null for the whole model.
template <class Load>
nlohmann::json start_weights(const TrainOptions& o, bool resume, const std::filesystem::path& run,
                             torch::nn::Module& model, Load load, torch::nn::Module* pretrained_into = nullptr) {
    const std::filesystem::path record = run / "init.json";
    if (resume) return std::filesystem::exists(record) ? nlohmann::json::parse(read_file(record)) : nlohmann::json();
    if (!o.pretrained.empty()) {
        nlohmann::json info = pretrained_weights(o.pretrained, o.model, pretrained_into ? *pretrained_into : model);
        write_file_atomic(record, info.dump(2) + "\n");
        return info;
    }
    if (o.init.empty()) return nullptr;
    auto source = load(o.init);
    nlohmann::json info =
        init_weights(o.init, source.meta["model"].value("name", std::string()), *source.model, o.model, model);
    if (source.meta.contains("trained_on")) info["trained_on"] = source.meta["trained_on"];
    write_file_atomic(record, info.dump(2) + "\n");
    return info;
}

// Commits one epoch after its files (weights, optimizer, ...) are written: state.json becomes the
// stopping state plus `fields` (which name those files) and "finished": false, written atomically, so a
// kill at any moment leaves the previous consistent checkpoint; then the files under `file_keys` that
// the previous state named and the new one does not are removed. Returns the new state.
inline nlohmann::json commit_epoch(const std::filesystem::path& run, const std::filesystem::path& state_file,
                                   const nlohmann::json& previous, const EarlyStopping& stopper,
                                   const LrSchedule& schedule, const nlohmann::json& fields,
                                   const std::vector<std::string>& file_keys) {
    nlohmann::json state = stopping_state(stopper, schedule);
    state.update(fields);
    state["finished"] = false;
    write_file_atomic(state_file, state.dump() + "\n");
    remove_replaced_files(run, previous, state, file_keys);
    return state;
}

}  // namespace hemoscan::train_detail

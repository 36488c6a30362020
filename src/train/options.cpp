// The options of a training run: their JSON form (config.json), the checks both trainers share, and
// the preprocessing they describe. Free of LibTorch.
#include "hemoscan/train/trainer.hpp"

#include "hemoscan/error.hpp"
#include "hemoscan/io/sequences.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/strings.hpp"
#include "hemoscan/util/fs.hpp"
#include "train/options.hpp"

namespace hemoscan {

namespace fs = std::filesystem;
nlohmann::json train_options_to_json(const TrainOptions& o) {
    nlohmann::json j = {{"task", o.task},
                        {"data", o.data},
                        {"labels", o.labels},
                        {"model", o.model},
                        {"out", o.out},
                        {"epochs", o.epochs},
                        {"batch", o.batch},
                        {"lr", o.lr},
                        {"weight_decay", o.weight_decay},
                        {"optimizer", o.optimizer},
                        {"schedule", o.schedule},
                        {"warmup_epochs", o.warmup_epochs},
                        {"size", o.size},
                        {"keep_aspect", o.keep_aspect},
                        {"window", o.window},
                        {"normalization", o.normalization},
                        {"crop_head", o.crop_head},
                        {"median", o.median},
                        {"val_fraction", o.val_fraction},
                        {"folds", o.folds},
                        {"fold", o.fold},
                        {"seed", o.seed},
                        {"threads", o.threads},
                        {"workers", o.workers},
                        {"augment", o.augment},
                        {"class_weights", o.class_weights},
                        {"patience", o.patience},
                        {"grad_clip", o.grad_clip},
                        {"width", o.width},
                        {"pool", o.pool},
                        {"modality", o.modality},
                        {"sequences", o.sequences},
                        {"tta", o.tta},
                        {"loss", o.loss},
                        {"depth", o.depth},
                        {"bleed_fraction", o.bleed_fraction},
                        {"pretrain_epochs", o.pretrain_epochs},
                        {"ema_epochs", o.ema_epochs},
                        {"mixup", o.mixup},
                        {"insert_lesions", o.insert_lesions},
                        {"init", o.init},
                        {"pretrained", o.pretrained},
                        {"freeze_bn", o.freeze_bn},
                        {"context", o.context},
                        {"stage1", o.stage1},
                        {"stage1_folds", o.stage1_folds},
                        {"study_epochs", o.study_epochs},
                        {"study_lr", o.study_lr},
                        {"study_hidden", o.study_hidden}};
    j["dropout"] = o.dropout ? nlohmann::json(*o.dropout) : nlohmann::json(nullptr);
    j["freeze_epochs"] = o.freeze_epochs ? nlohmann::json(*o.freeze_epochs) : nlohmann::json(nullptr);
    j["backbone_lr_mult"] = o.backbone_lr_mult ? nlohmann::json(*o.backbone_lr_mult) : nlohmann::json(nullptr);
    return j;
}

TrainOptions train_options_from_json(const nlohmann::json& j) {
    TrainOptions o;
    auto get = [&](const char* key, auto& field) {
        if (j.contains(key) && !j[key].is_null()) field = j[key].get<std::decay_t<decltype(field)>>();
    };
    get("data", o.data);
    get("labels", o.labels);
    get("model", o.model);
    get("out", o.out);
    get("epochs", o.epochs);
    get("batch", o.batch);
    get("lr", o.lr);
    get("weight_decay", o.weight_decay);
    get("optimizer", o.optimizer);
    get("schedule", o.schedule);
    get("warmup_epochs", o.warmup_epochs);
    get("size", o.size);
    get("keep_aspect", o.keep_aspect);
    get("window", o.window);
    get("normalization", o.normalization);
    get("crop_head", o.crop_head);
    get("median", o.median);
    get("val_fraction", o.val_fraction);
    get("folds", o.folds);
    get("fold", o.fold);
    get("seed", o.seed);
    get("threads", o.threads);
    get("workers", o.workers);
    get("augment", o.augment);
    get("class_weights", o.class_weights);
    get("patience", o.patience);
    get("grad_clip", o.grad_clip);
    get("width", o.width);
    get("pool", o.pool);
    get("modality", o.modality);
    get("sequences", o.sequences);
    get("tta", o.tta);
    get("task", o.task);
    get("loss", o.loss);
    get("depth", o.depth);
    get("bleed_fraction", o.bleed_fraction);
    get("pretrain_epochs", o.pretrain_epochs);
    get("ema_epochs", o.ema_epochs);
    get("mixup", o.mixup);
    get("insert_lesions", o.insert_lesions);
    get("init", o.init);
    get("pretrained", o.pretrained);
    get("freeze_bn", o.freeze_bn);
    if (j.contains("freeze_epochs") && !j["freeze_epochs"].is_null()) o.freeze_epochs = j["freeze_epochs"].get<int>();
    if (j.contains("backbone_lr_mult") && !j["backbone_lr_mult"].is_null())
        o.backbone_lr_mult = j["backbone_lr_mult"].get<double>();
    get("context", o.context);
    get("stage1", o.stage1);
    get("stage1_folds", o.stage1_folds);
    get("study_epochs", o.study_epochs);
    get("study_lr", o.study_lr);
    get("study_hidden", o.study_hidden);
    if (j.contains("dropout") && !j["dropout"].is_null()) o.dropout = j["dropout"].get<double>();
    return o;
}

TrainOptions load_run_options(const fs::path& run) {
    fs::path cfg = run / "config.json";
    if (!fs::exists(cfg)) throw InputError(cfg.string() + ": no such file (is " + run.string() + " a run folder?)");
    try {
        return train_options_from_json(nlohmann::json::parse(read_file(cfg))["options"]);
    } catch (const nlohmann::json::exception& e) {
        throw InputError(cfg.string() + ": " + e.what());
    }
}

namespace train_detail {

void validate_common_options(const TrainOptions& o) {
    if (o.epochs < 1) throw UsageError("`epochs` must be >= 1");
    if (o.batch < 1) throw UsageError("`batch` must be >= 1");
    if (!(o.lr > 0)) throw UsageError("`lr` must be > 0");
    if (o.weight_decay < 0) throw UsageError("`weight_decay` must be >= 0");
    if (o.size < 16 || o.size > 4096) throw UsageError("`size` must be in 16..4096");
    if (o.optimizer != "adam" && o.optimizer != "adamw") {
        throw UsageError("unknown `optimizer` '" + o.optimizer + "' (adam, adamw)");
    }
    if (o.median != 0 && (o.median < 3 || o.median % 2 == 0)) {
        throw UsageError("`median` must be 0 (off) or an odd number >= 3");
    }
    if (!(o.ema_epochs >= 0)) throw UsageError("`ema_epochs` must be >= 0 epochs (0 = off)");
    if (o.freeze_epochs && (*o.freeze_epochs < 0 || *o.freeze_epochs > o.epochs)) {
        throw UsageError("`freeze_epochs` must be in 0..`epochs` (" + std::to_string(o.epochs) +
                         "; equal to `epochs`: the backbone never trains)");
    }
    if (o.backbone_lr_mult && !(*o.backbone_lr_mult > 0 && *o.backbone_lr_mult <= 10)) {
        throw UsageError("`backbone_lr_mult` must be in (0, 10] (a frozen backbone: `freeze_epochs` = `epochs`)");
    }
    if (o.dist.distributed()) {
        if (o.batch % o.dist.world_size != 0) {
            throw UsageError("`batch` (the global batch) must be a multiple of the " +
                             std::to_string(o.dist.world_size) + " processes");
        }
        if (o.dist_timeout_s < 1) throw UsageError("`dist_timeout_s` must be at least 1 second");
    }
}

}  // namespace train_detail

void validate_train_options(const TrainOptions& o) {
    train_detail::validate_common_options(o);
    if (!(o.val_fraction >= 0 && o.val_fraction < 1)) {
        throw UsageError("`val_fraction` must be in [0, 1) (0: no validation part; train on all, keep the last epoch)");
    }
    if (o.folds != 0 && (o.folds < 2 || o.fold < 0 || o.fold >= o.folds)) {
        throw UsageError("`folds` N needs N >= 2 and `fold` K in 0..N-1");
    }
    if (!(o.mixup >= 0)) throw UsageError("`mixup` must be >= 0 (0 = off)");
    if (!(o.insert_lesions >= 0 && o.insert_lesions <= 1)) throw UsageError("`insert_lesions` must be in 0..1 (0 = off)");
    if (o.pretrain_epochs < 0) throw UsageError("`pretrain_epochs` must be >= 0");
    if (o.pretrain_epochs > 0 && o.model != "unet-ae") throw UsageError("`pretrain_epochs` needs `model` unet-ae");
    if (o.context < 0 || o.context > 8) throw UsageError("`context` must be in 0..8 slices on each side");
    if (!o.pretrained.empty() && !o.init.empty()) {
        throw UsageError("`pretrained` and `init` both give starting weights: use one");
    }
    if (o.task == "study") {
        if (o.stage1.empty() && o.stage1_folds < 2) throw UsageError("`stage1_folds` must be >= 2");
        if (o.study_epochs < 1) throw UsageError("`study_epochs` must be >= 1");
        if (!(o.study_lr > 0)) throw UsageError("`study_lr` must be > 0");
        if (o.study_hidden < 1 || o.study_hidden > 1024) throw UsageError("`study_hidden` must be in 1..1024");
    }
}

PreprocessOptions preprocess_options_of(const TrainOptions& o) {
    PreprocessOptions p;
    p.windows = parse_windows(o.window);
    p.resize = ResizeOptions{o.size, o.size, o.keep_aspect, 0.f};
    p.median_kernel = o.median;
    p.normalization = parse_normalization(o.normalization);
    p.crop_head = o.crop_head;
    p.mr = parse_modality_policy(o.modality) == ModalityPolicy::MrOnly;
    for (const std::string& s : split(o.sequences, ',')) {
        if (!trim(s).empty()) p.sequences.push_back(to_lower(trim(s)));
    }
    if (!p.sequences.empty() && !p.mr) throw UsageError("`sequences` name MR channels: give `modality` mr too");
    return p;
}

DatasetOptions dataset_options_of(const TrainOptions& o) {
    DatasetOptions d;
    d.labels = o.labels;
    d.sequences = preprocess_options_of(o).sequences;
    return d;
}

void resolve_sequences(TrainOptions& o, const Dataset& ds) {
    if (!o.sequences.empty() || parse_modality_policy(o.modality) != ModalityPolicy::MrOnly) return;
    for (const DatasetItem& item : ds.items) {
        std::error_code ec;
        if (!std::filesystem::is_directory(item.path, ec)) continue;
        std::string spec;
        for (const std::string& s : case_sequences(item.path)) spec += (spec.empty() ? "" : ",") + s;
        o.sequences = spec;
        logger().info("MR sequences (channels): {} (from {})", spec, item.path.string());
        return;
    }
}

}  // namespace hemoscan

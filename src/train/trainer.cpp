#include "hemoscan/train/trainer.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "hemoscan/data/batch_tensor.hpp"
#include "hemoscan/data/loader.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/metrics/classification.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/report/plot.hpp"
#include "hemoscan/evaluate/classification.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/train/pretrain.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/runtime.hpp"
#include "hemoscan/version.hpp"
#include "train/mixup.hpp"
#include "train/optimizer.hpp"

namespace hemoscan {

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
                        {"tta", o.tta},
                        {"loss", o.loss},
                        {"depth", o.depth},
                        {"bleed_fraction", o.bleed_fraction},
                        {"pretrain_epochs", o.pretrain_epochs},
                        {"ema_epochs", o.ema_epochs},
                        {"mixup", o.mixup},
                        {"insert_lesions", o.insert_lesions},
                        {"init", o.init},
                        {"context", o.context}};
    j["dropout"] = o.dropout ? nlohmann::json(*o.dropout) : nlohmann::json(nullptr);
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
    get("context", o.context);
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

void validate_train_options(const TrainOptions& o) {
    if (o.epochs < 1) throw UsageError("`epochs` must be >= 1");
    if (o.batch < 1) throw UsageError("`batch` must be >= 1");
    if (!(o.lr > 0)) throw UsageError("`lr` must be > 0");
    if (o.weight_decay < 0) throw UsageError("`weight_decay` must be >= 0");
    if (o.size < 16 || o.size > 4096) throw UsageError("`size` must be in 16..4096");
    if (o.optimizer != "adam" && o.optimizer != "adamw") throw UsageError("unknown `optimizer` '" + o.optimizer + "' (adam, adamw)");
    if (!(o.val_fraction >= 0 && o.val_fraction < 1)) {
        throw UsageError("`val_fraction` must be in [0, 1) (0: no validation part; train on all, keep the last epoch)");
    }
    if (o.folds != 0 && (o.folds < 2 || o.fold < 0 || o.fold >= o.folds)) {
        throw UsageError("`folds` N needs N >= 2 and `fold` K in 0..N-1");
    }
    if (o.median != 0 && (o.median < 3 || o.median % 2 == 0)) throw UsageError("`median` must be 0 (off) or an odd number >= 3");
    if (!(o.ema_epochs >= 0)) throw UsageError("`ema_epochs` must be >= 0 epochs (0 = off)");
    if (!(o.mixup >= 0)) throw UsageError("`mixup` must be >= 0 (0 = off)");
    if (!(o.insert_lesions >= 0 && o.insert_lesions <= 1)) throw UsageError("`insert_lesions` must be in 0..1 (0 = off)");
    if (o.pretrain_epochs < 0) throw UsageError("`pretrain_epochs` must be >= 0");
    if (o.pretrain_epochs > 0 && o.model != "unet-ae") throw UsageError("`pretrain_epochs` needs `model` unet-ae");
    if (o.context != 0) throw UsageError("`context` is for segmentation (`task` segment)");
}

namespace {

// The labels a painted lesion makes positive: the one label of a binary data set, or "any" (and
// "intraparenchymal", what the painted lesion looks like) of RSNA-style labels. Class folders and
// other label sets have no such label: UsageError.
std::vector<int> lesion_labels(const TrainOptions& o, const Dataset& ds) {
    if (ds.multiclass) {
        throw UsageError("`insert_lesions` needs binary labels (one label, or RSNA-style with \"any\"), not class folders");
    }
    if (ds.label_names.size() == 1) return {0};
    std::vector<int> out;
    for (size_t l = 0; l < ds.label_names.size(); ++l) {
        if (ds.label_names[l] == "any" || ds.label_names[l] == "intraparenchymal") out.push_back(static_cast<int>(l));
    }
    if (std::find(ds.label_names.begin(), ds.label_names.end(), "any") == ds.label_names.end()) {
        throw UsageError("`insert_lesions`: " + o.data + " has " + std::to_string(ds.label_names.size()) +
                         " labels and none is \"any\"; which one would a painted bleed set?");
    }
    return out;
}

// Lesion contrast per channel follows the channel's window (80 HU brain window = 1); images are unit range.
LesionInsertOptions lesion_options(const TrainOptions& o, const PreprocessOptions& pre) {
    if (!o.augment) throw UsageError("`insert_lesions` is an augmentation: it needs `augment` on");
    if (pre.normalization != Normalization::UnitRange) {
        throw UsageError("`insert_lesions` paints in unit-range images: it needs `normalization` unit");
    }
    LesionInsertOptions l;
    l.probability = o.insert_lesions;
    for (const Window& w : pre.windows) l.channel_gain.push_back(static_cast<float>(80.0 / std::max(1.0, double(w.width))));
    return l;
}

// Exponential moving average of the parameters (Polyak averaging). The decay follows from a time
// constant in epochs, so the same setting means the same thing for any data set and batch size;
// early steps use a shorter memory ((1 + t) / (10 + t), as TensorFlow's ExponentialMovingAverage)
// so that the average is not dominated by the random initial weights.
class WeightAverage {
public:
    WeightAverage(torch::nn::Module& model, double epochs, size_t steps_per_epoch) : model_(model) {
        if (epochs <= 0) return;
        decay_ = std::exp(-1.0 / (epochs * static_cast<double>(std::max<size_t>(1, steps_per_epoch))));
        torch::NoGradGuard ng;
        for (auto& p : model.parameters()) avg_.push_back(p.detach().clone());
    }
    bool enabled() const { return !avg_.empty(); }
    void update() {
        if (!enabled()) return;
        torch::NoGradGuard ng;
        ++steps_;
        const double d = std::min(decay_, (1.0 + static_cast<double>(steps_)) / (10.0 + static_cast<double>(steps_)));
        auto params = model_.parameters();
        for (size_t i = 0; i < params.size(); ++i) avg_[i].mul_(d).add_(params[i].detach(), 1.0 - d);
    }
    // Exchanges the model's parameters with the average (twice = back to the training weights).
    void swap() {
        if (!enabled()) return;
        torch::NoGradGuard ng;
        auto params = model_.parameters();
        for (size_t i = 0; i < params.size(); ++i) {
            auto tmp = params[i].detach().clone();
            params[i].copy_(avg_[i]);
            avg_[i].copy_(tmp);
        }
    }
    std::int64_t steps() const { return steps_; }
    void restore(const torch::nn::Module& averaged, std::int64_t steps) {
        torch::NoGradGuard ng;
        auto src = averaged.parameters();
        for (size_t i = 0; i < avg_.size() && i < src.size(); ++i) avg_[i].copy_(src[i]);
        steps_ = steps;
    }

private:
    torch::nn::Module& model_;
    double decay_ = 0;
    std::int64_t steps_ = 0;
    std::vector<torch::Tensor> avg_;
};

// Label matrix of the items as 0/1 ints.
std::vector<int> label_column(const Dataset& ds, const std::vector<size_t>& idx, size_t l) {
    std::vector<int> t;
    t.reserve(idx.size());
    for (size_t i : idx) t.push_back(ds.items[i].labels[l] > 0.5f ? 1 : 0);
    return t;
}

// Validation AUC per label (null where the validation part has a single class) and their mean (NaN
// when no label has both classes). Multi-class: one-vs-rest per class.
double label_aucs(const Dataset& ds, const std::vector<size_t>& idx, const std::vector<std::vector<double>>& probs,
                  nlohmann::json& aucs) {
    double sum = 0;
    int n = 0;
    for (size_t l = 0; l < ds.label_names.size(); ++l) {
        auto t = label_column(ds, idx, l);
        long pos = std::count(t.begin(), t.end(), 1);
        if (pos == 0 || pos == static_cast<long>(t.size())) {
            aucs[ds.label_names[l]] = nullptr;
            continue;
        }
        std::vector<double> s;
        for (const auto& p : probs) s.push_back(p[l]);
        const double auc = roc_auc(s, t);
        aucs[ds.label_names[l]] = auc;
        sum += auc;
        ++n;
    }
    return n ? sum / n : std::nan("");
}

std::string fmt(double v, int prec = 4) {
    if (std::isnan(v)) return "";
    std::ostringstream ss;
    ss.precision(prec);
    ss << std::fixed << v;
    return ss.str();
}

void write_log_csv(const fs::path& file, const nlohmann::json& history, const std::vector<std::string>& labels) {
    std::ostringstream ss;
    ss << "epoch,lr,train_loss,val_loss,val_auc,seconds,train_images_per_s";
    for (const auto& l : labels) ss << ",auc_" << l;
    ss << "\n";
    for (const auto& row : history) {
        auto num = [&](const char* k) { return row[k].is_null() ? std::string() : fmt(row[k].get<double>(), 6); };
        ss << row["epoch"].get<int>() << ',' << num("lr") << ',' << num("train_loss") << ',' << num("val_loss") << ','
           << num("val_auc") << ',' << fmt(row["seconds"].get<double>(), 1) << ','
           << fmt(row.value("train_images_per_s", 0.0), 1);
        for (const auto& l : labels) {
            const auto& a = row["auc"];
            ss << ',' << (a.contains(l) && !a[l].is_null() ? fmt(a[l].get<double>(), 6) : std::string());
        }
        ss << "\n";
    }
    write_file_atomic(file, ss.str());
}

void write_curves(const fs::path& file, const nlohmann::json& history) {
    Series tl{"train loss", {}, {}}, vl{"validation loss", {}, {}}, auc{"validation AUC", {}, {}};
    for (const auto& row : history) {
        double e = row["epoch"].get<int>() + 1;
        tl.x.push_back(e);
        tl.y.push_back(row["train_loss"].get<double>());
        if (!row["val_loss"].is_null()) {
            vl.x.push_back(e);
            vl.y.push_back(row["val_loss"].get<double>());
        }
        if (!row["val_auc"].is_null()) {
            auc.x.push_back(e);
            auc.y.push_back(row["val_auc"].get<double>());
        }
    }
    PlotOptions lo;
    lo.title = "Loss";
    lo.x_label = "epoch";
    lo.y_label = "loss";
    lo.width = 640;
    lo.height = 420;
    PlotOptions ao = lo;
    ao.title = "Validation AUC";
    ao.y_label = "AUC";
    ao.y_unit_range = true;
    std::vector<Series> losses{tl};
    if (!vl.x.empty()) losses.push_back(vl);
    cv::Mat left = line_plot(losses, lo);
    cv::Mat right = auc.x.empty() ? cv::Mat(left.size(), left.type(), cv::Scalar(255, 255, 255))
                                  : line_plot({auc}, ao);
    cv::Mat both;
    cv::hconcat(left, right, both);
    save_plot(file, both);
}

// "Precise BN": recompute BatchNorm running statistics as a plain average over un-augmented
// training batches with the epoch's final weights. With few batches per epoch (small medical data
// sets) the exponential running averages lag behind the weights and eval-mode outputs swing wildly
// from epoch to epoch; the recomputed statistics match what the model sees at inference.
void recalibrate_batchnorm(ClassifierImpl& model, DataLoader& loader, size_t max_batches) {
    std::vector<torch::nn::BatchNorm2dImpl*> bns;
    for (auto& m : model.modules(/*include_self=*/false)) {
        if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) bns.push_back(bn);
    }
    if (bns.empty()) return;
    std::vector<c10::optional<double>> momenta;
    for (auto* bn : bns) {
        momenta.push_back(bn->options.momentum());
        bn->options.momentum(c10::nullopt);  // cumulative average over the batches below
        bn->reset_running_stats();
    }
    model.train();
    {
        torch::NoGradGuard ng;
        loader.start_epoch(0);
        Batch b;
        size_t n = 0;
        while (n < max_batches && loader.next(b)) {
            BatchTensors t = to_tensors(std::move(b));
            model.features(t.images);
            b = Batch{};
            ++n;
        }
    }
    for (size_t i = 0; i < bns.size(); ++i) bns[i]->options.momentum(momenta[i]);
}

}  // namespace

TrainResult train_classifier(const TrainOptions& options_in, const TrainCallbacks& cb, bool resume,
                             const Split* split_override) {
    TrainOptions o = options_in;
    validate_train_options(o);
    const fs::path run(o.out);
    if (run.empty()) throw UsageError("`out` RUN is required");
    const ModalityPolicy policy = parse_modality_policy(o.modality);

    const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(threads);

    DatasetOptions dopt;
    dopt.labels = o.labels;
    Dataset ds = open_dataset(o.data, dopt);
    const size_t L = ds.label_names.size();
    if (ds.multiclass && L < 2) throw InputError(o.data + ": a class-folder dataset needs at least two classes");

    // The split: given (cv), k-fold or holdout; grouped by patient and written to the run folder.
    Split split;
    if (split_override) {
        split = *split_override;
    } else if (o.folds > 0) {
        auto folds = grouped_stratified_folds(ds, o.folds, o.seed);
        split = fold_split(folds, o.fold);
    } else if (o.val_fraction == 0) {
        for (size_t i = 0; i < ds.size(); ++i) split.train.push_back(i);
    } else {
        split = holdout_split(ds, o.val_fraction, o.seed);
    }
    if (split.val.empty()) {
        // Nothing to choose an epoch or a threshold on: the schedule's last epoch is kept, and the
        // threshold is the loss's own balanced point (see threshold_priors below).
        logger().info("no validation part: training on all {} items, keeping the last epoch", split.train.size());
        if (o.patience > 0) logger().warn("`patience` {} has no effect without a validation part", o.patience);
    }
    if (split.train.empty()) throw InputError(o.data + ": no training items after the split");

    // State of a previous run of this folder.
    fs::path state_file = run / "state.json";
    nlohmann::json state = nlohmann::json::object();
    if (resume) {
        if (!fs::exists(state_file)) throw InputError(state_file.string() + ": nothing to resume (no checkpoint)");
        state = nlohmann::json::parse(read_file(state_file));
        if (state.value("fingerprint", std::string()) != ds.fingerprint()) {
            throw InputError(o.data + ": the data changed since " + run.string() + " was started (fingerprint differs)");
        }
    } else if (fs::exists(state_file) || fs::exists(run / "model.pt")) {
        throw UsageError(run.string() + " already holds a run: use `resume` " + run.string() + " or another `out`");
    }

    const PreprocessOptions pre = preprocess_options_of(o);
    // Options that depend on the data are checked before anything is written.
    LesionInsertOptions lesion;
    std::vector<int> lesion_label_indices;
    if (o.insert_lesions > 0) {
        lesion = lesion_options(o, pre);
        lesion_label_indices = lesion_labels(o, ds);
    }
    fs::create_directories(run);
    nlohmann::json config = {{"hemoscan_version", kVersion},
                             {"command", "train"},
                             {"options", train_options_to_json(o)},
                             {"data_fingerprint", ds.fingerprint()},
                             {"data_form", to_string(ds.form)},
                             {"labels", ds.label_names},
                             {"multiclass", ds.multiclass},
                             {"train_items", split.train.size()},
                             {"val_items", split.val.size()},
                             {"runtime", runtime_json()}};
    if (!resume) {
        write_file_atomic(run / "config.json", config.dump(2) + "\n");
        write_split_csv(run / "split.csv", ds, split);
    }

    torch::manual_seed(o.seed);
    ModelConfig mc;
    mc.name = o.model;
    mc.in_channels = pre.channels();
    mc.num_outputs = static_cast<int>(L);
    mc.multiclass = ds.multiclass;
    mc.dropout = o.dropout;
    mc.width = o.width;
    mc.pool = o.pool;
    std::shared_ptr<ClassifierImpl> model = create_model(mc);
    // Transfer learning: the starting weights come from another model file (a resumed run already
    // holds them, trained further, in its checkpoint). RUN/init.json says what was taken.
    const nlohmann::json init_info =
        train_detail::start_weights(o, resume, run, *model, [](const std::string& f) { return load_model(f); });

    // Class weights from the training labels: positives are up-weighted by neg/pos (multi-label), or
    // classes by N / (K * count) (multi-class), so a rare label still moves the loss. The loss's
    // balanced decision point per label is the threshold prior (choose_thresholds): 0.5 with class
    // weights, the training prevalence without.
    torch::Tensor pos_weight, class_weight;
    std::vector<double> threshold_priors(L, 0.5);
    {
        const double n = static_cast<double>(split.train.size());
        std::vector<float> w(L, 1.f);
        for (size_t l = 0; l < L; ++l) {
            double pos = 0;
            for (size_t i : split.train) pos += ds.items[i].labels[l] > 0.5f ? 1 : 0;
            if (ds.multiclass) {
                w[l] = pos > 0 ? static_cast<float>(n / (static_cast<double>(L) * pos)) : 1.f;
            } else if (pos > 0 && pos < n) {
                w[l] = static_cast<float>((n - pos) / pos);
                if (!o.class_weights) threshold_priors[l] = pos / n;
            }
        }
        if (o.class_weights) (ds.multiclass ? class_weight : pos_weight) = torch::tensor(w);
    }
    auto loss_fn = [&](const torch::Tensor& logits, const torch::Tensor& labels) {
        if (ds.multiclass) {
            auto opts = torch::nn::functional::CrossEntropyFuncOptions();
            if (class_weight.defined()) opts = opts.weight(class_weight);
            // Mixed (soft) labels need the probability-target form; one-hot labels keep the index form,
            // whose weighted mean divides by the weights of the targets.
            if (o.mixup > 0) return torch::nn::functional::cross_entropy(logits, labels, opts);
            return torch::nn::functional::cross_entropy(logits, labels.argmax(1), opts);
        }
        auto opts = torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions();
        if (pos_weight.defined()) opts = opts.pos_weight(pos_weight);
        return torch::nn::functional::binary_cross_entropy_with_logits(logits, labels, opts);
    };

    std::unique_ptr<torch::optim::Optimizer> opt = train_detail::make_optimizer(o, model->parameters());
    const ScheduleOptions so = train_detail::schedule_options(o);
    LrSchedule schedule(so);
    EarlyStopping stopper(o.patience, 1e-6);

    nlohmann::json history = nlohmann::json::array();
    std::vector<std::vector<double>> best_val_probs;
    int start_epoch = 0;
    std::optional<LoadedModel> resumed_average;
    if (resume) {
        start_epoch = state["epoch_done"].get<int>() + 1;
        if (state.value("finished", false)) {
            throw UsageError(run.string() + ": this run has already finished (" + std::to_string(start_epoch) + " epochs)");
        }
        history = state["history"];
        stopper.restore(state["best_metric"].get<double>(), state["best_epoch"].get<int>(),
                        state["bad_epochs"].get<int>(), start_epoch);
        schedule.restore(state["plateau_lr"].get<double>(), state["plateau_best"].get<double>(),
                         state["plateau_bad"].get<int>());
        LoadedModel last = load_model(run / state["checkpoint"].get<std::string>());
        train_detail::copy_weights(*last.model, *model);
        train_detail::load_optimizer(run / state["optimizer"].get<std::string>(), *opt);
        if (state.contains("best_val_probs")) best_val_probs = state["best_val_probs"].get<decltype(best_val_probs)>();
        if (!state.value("ema", std::string()).empty()) resumed_average = load_model(run / state["ema"].get<std::string>());
        logger().info("resuming {} after epoch {}", run.string(), start_epoch);
    }

    LoaderOptions lt;
    lt.batch_size = o.batch;
    lt.shuffle = true;
    lt.drop_last = split.train.size() > static_cast<size_t>(o.batch);  // BatchNorm dislikes a batch of 1
    lt.workers = o.workers;
    lt.seed = o.seed;
    lt.augment = o.augment;
    lt.modality = policy;
    lt.lesion = lesion;
    lt.lesion_labels = lesion_label_indices;
    DataLoader train_loader(ds, split.train, pre, lt);
    LoaderOptions lv = lt;
    lv.lesion = {};  // never painted (augment is off too)
    lv.shuffle = false;
    lv.drop_last = false;
    lv.augment = false;
    std::unique_ptr<DataLoader> val_loader;
    if (!split.val.empty()) val_loader = std::make_unique<DataLoader>(ds, split.val, pre, lv);
    // The training items without augmentation, for recomputing BatchNorm statistics.
    DataLoader bn_loader(ds, split.train, pre, lv);
    // unet-ae (seed 000): reconstruction pre-training of the autoencoder before the classification
    // epochs. A resumed run already holds pre-trained (and trained) weights.
    nlohmann::json pretrain_info = nullptr;
    if (o.pretrain_epochs > 0 && !resume) {
        std::vector<double> losses;
        pretrain_reconstruction(*model, train_loader, o.pretrain_epochs, o.lr, [&](int e, double loss) {
            losses.push_back(loss);
            logger().info("unet-ae pretraining epoch {}/{}: reconstruction MSE {:.5f}", e + 1, o.pretrain_epochs, loss);
        });
        pretrain_info = {{"epochs", o.pretrain_epochs}, {"reconstruction_mse", losses}};
        write_file_atomic(run / "pretrain.json", pretrain_info.dump(2) + "\n");
    } else if (resume && fs::exists(run / "pretrain.json")) {
        pretrain_info = nlohmann::json::parse(read_file(run / "pretrain.json"));
    }
    WeightAverage average(*model, o.ema_epochs, train_loader.batches_per_epoch());
    if (resumed_average && average.enabled()) average.restore(*resumed_average->model, state.value("ema_steps", 0));

    auto predict_val = [&](double& val_loss) {
        std::vector<std::vector<double>> probs(split.val.size(), std::vector<double>(L));
        std::map<size_t, size_t> pos_of;
        for (size_t k = 0; k < split.val.size(); ++k) pos_of[split.val[k]] = k;
        model->eval();
        torch::NoGradGuard ng;
        val_loader->start_epoch(0);
        Batch b;
        double loss_sum = 0;
        size_t n = 0;
        while (val_loader->next(b)) {
            BatchTensors t = to_tensors(std::move(b));
            auto logits = model->forward(t.images);
            loss_sum += loss_fn(logits, t.labels).item<double>() * static_cast<double>(t.indices.size());
            n += t.indices.size();
            auto p = probabilities(logits, ds.multiclass);
            if (o.tta) p = 0.5 * (p + probabilities(model->forward(t.images.flip({3})), ds.multiclass));
            p = p.contiguous();
            auto acc = p.accessor<float, 2>();
            for (size_t r = 0; r < t.indices.size(); ++r) {
                auto& row = probs[pos_of.at(t.indices[r])];
                for (size_t l = 0; l < L; ++l) row[l] = acc[static_cast<long>(r)][static_cast<long>(l)];
            }
            b = Batch{};
        }
        val_loss = n ? loss_sum / static_cast<double>(n) : std::nan("");
        return probs;
    };

    nlohmann::json meta_base = {{"labels", ds.label_names},
                                {"multiclass", ds.multiclass},
                                {"preprocess", preprocess_to_json(pre, o.window, o.modality)},
                                {"hemoscan_version", kVersion},
                                {"tta", o.tta ? "hflip" : "none"},
                                {"trained_on", {{"data", o.data}, {"fingerprint", ds.fingerprint()}}}};
    if (!pretrain_info.is_null()) meta_base["pretrain"] = pretrain_info;
    if (!init_info.is_null()) meta_base["init"] = init_info;

    int epoch = start_epoch;
    for (; epoch < o.epochs; ++epoch) {
        if (start_epoch > 0 && epoch == start_epoch && stopper.should_stop()) break;
        auto t0 = std::chrono::steady_clock::now();
        const double lr = schedule.lr(epoch);
        train_detail::set_learning_rate(*opt, lr);
        // Per-epoch seeds (dropout, shuffling, augmentation) make a resumed run repeat the same epochs.
        torch::manual_seed(o.seed * 1000003ULL + static_cast<std::uint64_t>(epoch));
        model->train();
        train_loader.start_epoch(static_cast<std::uint64_t>(epoch));
        if (cb.epoch_start) cb.epoch_start(epoch, o.epochs, train_loader.batches_per_epoch());
        Batch b;
        double loss_sum = 0;
        size_t seen = 0, batch_no = 0;
        while (train_loader.next(b)) {
            BatchTensors t = to_tensors(std::move(b));
            if (o.mixup > 0) {
                // One draw per batch, from (seed, epoch, batch): a resumed run mixes the same pairs.
                const std::uint64_t seed =
                    mix_seed(o.seed ^ 0x6d69787570ULL, static_cast<std::uint64_t>(epoch), batch_no);
                const auto draw = train_detail::draw_mixup(o.mixup, t.images.size(0), seed);
                train_detail::apply_mixup(t.images, t.labels, draw);
            }
            opt->zero_grad();
            auto loss = loss_fn(model->forward(t.images), t.labels);
            loss.backward();
            if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), o.grad_clip);
            opt->step();
            average.update();
            double lv_ = loss.item<double>();
            if (!std::isfinite(lv_)) throw Error("training diverged (loss " + std::to_string(lv_) + "): lower `lr`");
            loss_sum += lv_ * static_cast<double>(t.indices.size());
            seen += t.indices.size();
            if (cb.batch_end) cb.batch_end(++batch_no, loss_sum / static_cast<double>(seen));
            b = Batch{};
        }
        const double train_loss = seen ? loss_sum / static_cast<double>(seen) : std::nan("");
        const double train_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        average.swap();  // validate, keep and checkpoint the averaged weights (a no-op without --ema)
        recalibrate_batchnorm(*model, bn_loader, 64);

        double val_loss = std::nan(""), val_auc = std::nan("");
        nlohmann::json aucs = nlohmann::json::object();
        std::vector<std::vector<double>> val_probs;
        if (val_loader) {
            val_probs = predict_val(val_loss);
            val_auc = label_aucs(ds, split.val, val_probs, aucs);
        }
        // Early stopping and plateau follow validation AUC; without a usable AUC, minus the loss.
        // Validation loss breaks ties between epochs of equal AUC (AUC saturates at 1 on easy data).
        // Without a validation part every epoch "improves", so the last one is kept.
        double monitor = !std::isnan(val_auc) ? val_auc - 1e-3 * (std::isnan(val_loss) ? 0.0 : std::min(val_loss, 10.0))
                         : !std::isnan(val_loss) ? -val_loss
                         : val_loader        ? -train_loss
                                             : static_cast<double>(epoch);
        if (so.kind == ScheduleKind::Plateau) schedule.observe(monitor);
        const bool improved = stopper.update(monitor);
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        auto num = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
        nlohmann::json row = {{"epoch", epoch},          {"lr", lr},          {"train_loss", train_loss},
                              {"val_loss", num(val_loss)}, {"val_auc", num(val_auc)}, {"auc", aucs},
                              {"seconds", secs},         {"best", improved},
                              {"train_images_per_s", train_secs > 0 ? static_cast<double>(seen) / train_secs : 0.0}};
        history.push_back(row);

        // Checkpoint: weights and optimizer under the epoch's name, then state.json (the commit point)
        // naming them; a kill at any moment leaves a consistent previous checkpoint.
        std::string ck = "checkpoint_e" + std::to_string(epoch) + ".pt";
        std::string op = "optimizer_e" + std::to_string(epoch) + ".pt";
        std::string em = average.enabled() ? "ema_e" + std::to_string(epoch) + ".pt" : "";
        if (improved) {
            save_model(run / "best.pt", *model, meta_base);
            best_val_probs = val_probs;
        }
        if (average.enabled()) {
            save_model(run / em, *model, meta_base);
            average.swap();  // back to the training weights
        }
        save_model(run / ck, *model, meta_base);
        train_detail::save_optimizer(run / op, *opt);
        state = train_detail::commit_epoch(run, state_file, state, stopper, schedule,
                                           {{"epoch_done", epoch},
                                            {"checkpoint", ck},
                                            {"optimizer", op},
                                            {"ema", em},
                                            {"ema_steps", average.steps()},
                                            {"fingerprint", ds.fingerprint()},
                                            {"history", history},
                                            {"best_val_probs", best_val_probs}},
                                           {"checkpoint", "optimizer", "ema"});
        write_log_csv(run / "log.csv", history, ds.label_names);
        if (cb.epoch_end) cb.epoch_end(epoch, row);
        if (stopper.should_stop()) {
            logger().info("early stopping after epoch {}: no validation improvement for {} epochs", epoch + 1,
                          o.patience);
            ++epoch;
            break;
        }
    }
    const int epochs_run = epoch;

    // Final model: the best epoch's weights with thresholds chosen on validation (Youden's J).
    LoadedModel best = load_model(run / "best.pt");
    PredictionTable table;
    table.label_names = ds.label_names;
    table.multiclass = ds.multiclass;
    for (size_t k = 0; k < split.val.size() && k < best_val_probs.size(); ++k) {
        table.add(ds.items[split.val[k]], best_val_probs[k]);
    }
    std::vector<double> thresholds = threshold_priors;
    nlohmann::json metrics = nlohmann::json::object();
    if (table.size() > 0) {
        thresholds = choose_thresholds(table, threshold_priors);
        metrics = compute_metrics(table, thresholds, o.seed);
        write_predictions_csv(run / "predictions.csv", table, thresholds);
        write_metric_plots(run, table, thresholds);
    }
    metrics["best_epoch"] = stopper.best_epoch();
    metrics["epochs_run"] = epochs_run;
    metrics["split"] = o.folds > 0 ? "fold " + std::to_string(o.fold) + " of " + std::to_string(o.folds)
                   : split.val.empty() ? std::string("none (all items trained)")
                                       : "holdout " + std::to_string(o.val_fraction);
    nlohmann::json meta = meta_base;
    meta["thresholds"] = thresholds;
    meta["best_epoch"] = stopper.best_epoch();
    meta["validation"] = {{"macro_auc", metrics.value("macro_auc", nlohmann::json(nullptr))}, {"n", table.size()}};
    save_model(run / "model.pt", *best.model, meta);
    write_file_atomic(run / "metrics.json", metrics.dump(2) + "\n");
    write_curves(run / "curves.png", history);

    // The run is complete: drop the checkpoints, keep state.json (marked finished) and model.pt.
    std::error_code ec;
    fs::remove(run / state.value("checkpoint", std::string("none")), ec);
    fs::remove(run / state.value("optimizer", std::string("none")), ec);
    if (!state.value("ema", std::string()).empty()) fs::remove(run / state["ema"].get<std::string>(), ec);
    fs::remove(run / "best.pt", ec);
    state["finished"] = true;
    state["checkpoint"] = "";
    state["optimizer"] = "";
    state["ema"] = "";
    write_file_atomic(state_file, state.dump() + "\n");

    TrainResult result;
    result.model_path = run / "model.pt";
    result.metrics = metrics;
    result.epochs_run = epochs_run;
    result.best_epoch = stopper.best_epoch();
    result.val_indices = split.val;
    result.val_probs = best_val_probs;
    return result;
}

PreprocessOptions preprocess_options_of(const TrainOptions& o) {
    PreprocessOptions p;
    p.windows = parse_windows(o.window);
    p.resize = ResizeOptions{o.size, o.size, o.keep_aspect, 0.f};
    p.median_kernel = o.median;
    p.normalization = parse_normalization(o.normalization);
    p.crop_head = o.crop_head;
    return p;
}

}  // namespace hemoscan

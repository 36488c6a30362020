// Training a classifier into a run folder: the task-specific parts (data, loss, validation AUC,
// weight average, thresholds) on the run skeleton that both trainers share (train/run_loop.hpp).
#include "hemoscan/train/trainer.hpp"

#include "hemoscan/dist/grad_sync.hpp"
#include "hemoscan/dist/process_group.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "hemoscan/data/batch_tensor.hpp"
#include "hemoscan/data/loader.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/evaluate/classification.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/metrics/classification.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/train/pretrain.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/version.hpp"
#include "train/fine_tune.hpp"
#include "train/mixup.hpp"
#include "train/optimizer.hpp"
#include "train/run_loop.hpp"

namespace hemoscan {

namespace fs = std::filesystem;
using train_detail::EpochScore;
using train_detail::EpochStats;
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


// The split: given (cross-validation), k-fold or holdout, grouped by patient.
Split choose_split(const TrainOptions& o, const Dataset& ds, const Split* split_override) {
    Split split;
    if (split_override) {
        split = *split_override;
    } else if (o.folds > 0) {
        split = fold_split(grouped_stratified_folds(ds, o.folds, o.seed), o.fold);
    } else if (o.val_fraction == 0) {
        for (size_t i = 0; i < ds.size(); ++i) split.train.push_back(i);
    } else {
        split = holdout_split(ds, o.val_fraction, o.seed);
    }
    if (split.val.empty()) {
        // Nothing to choose an epoch or a threshold on: the schedule's last epoch is kept, and the
        // threshold is the loss's own balanced point (LossWeights::threshold_priors).
        logger().info("no validation part: training on all {} items, keeping the last epoch", split.train.size());
        if (o.patience > 0) logger().warn("`patience` {} has no effect without a validation part", o.patience);
    }
    if (split.train.empty()) throw InputError(o.data + ": no training items after the split");
    return split;
}

// Class weights from the training labels: positives are up-weighted by neg/pos (multi-label), or
// classes by N / (K * count) (multi-class), so a rare label still moves the loss. The loss's balanced
// decision point per label is the threshold prior (choose_thresholds): 0.5 with class weights, the
// training prevalence without.
struct LossWeights {
    torch::Tensor pos_weight, class_weight;
    std::vector<double> threshold_priors;
};

LossWeights loss_weights(const TrainOptions& o, const Dataset& ds, const Split& split) {
    const size_t L = ds.label_names.size();
    LossWeights lw;
    lw.threshold_priors.assign(L, 0.5);
    const double n = static_cast<double>(split.train.size());
    std::vector<float> w(L, 1.f);
    for (size_t l = 0; l < L; ++l) {
        double pos = 0;
        for (size_t i : split.train) pos += ds.items[i].labels[l] > 0.5f ? 1 : 0;
        if (ds.multiclass) {
            w[l] = pos > 0 ? static_cast<float>(n / (static_cast<double>(L) * pos)) : 1.f;
        } else if (pos > 0 && pos < n) {
            w[l] = static_cast<float>((n - pos) / pos);
            if (!o.class_weights) lw.threshold_priors[l] = pos / n;
        }
    }
    if (o.class_weights) (ds.multiclass ? lw.class_weight : lw.pos_weight) = torch::tensor(w);
    return lw;
}

std::shared_ptr<ClassifierImpl> make_classifier(const TrainOptions& o, const Dataset& ds,
                                                const PreprocessOptions& pre) {
    ModelConfig mc;
    mc.name = o.model;
    mc.in_channels = pre.channels() * (2 * o.context + 1);
    mc.num_outputs = static_cast<int>(ds.label_names.size());
    mc.multiclass = ds.multiclass;
    mc.dropout = o.dropout;
    mc.width = o.width;
    mc.pool = o.pool;
    return create_model(mc);
}

// The data of a classifier run: shuffled, augmented training batches; validation batches; the
// training items un-augmented (for BatchNorm statistics). Distributed, each rank takes its share of each:
// its shard of every epoch, its block of the validation items (val_items) and every N-th of the (at most
// kBatchNormBatches) BatchNorm batches.
struct ClassifierLoaders {
    std::unique_ptr<DataLoader> train, val, plain;
    std::vector<size_t> val_items;
};

constexpr size_t kBatchNormBatches = 64;

// Rank `rank` of `world`'s batches of the BatchNorm pass over `train`: batches rank, rank + world, ...
// of the first kBatchNormBatches, whole and in order (a loader of `batch` over them yields exactly those).
std::vector<size_t> batchnorm_items(const std::vector<size_t>& train, size_t batch, int rank, int world) {
    std::vector<size_t> mine;
    const size_t n = std::min(train.size(), kBatchNormBatches * batch);
    for (size_t b = static_cast<size_t>(rank); b * batch < n; b += static_cast<size_t>(world)) {
        mine.insert(mine.end(), train.begin() + static_cast<long>(b * batch),
                    train.begin() + static_cast<long>(std::min(n, (b + 1) * batch)));
    }
    return mine;
}

ClassifierLoaders make_loaders(const TrainOptions& o, const Dataset& ds, const Split& split,
                               const PreprocessOptions& pre) {
    LoaderOptions lt;
    lt.batch_size = o.batch / o.dist.world_size;  // the global batch, dealt over the ranks
    lt.shard_rank = o.dist.rank;
    lt.shard_count = o.dist.world_size;
    lt.shuffle = true;
    lt.drop_last = split.train.size() > static_cast<size_t>(o.batch);  // BatchNorm dislikes a batch of 1
    lt.workers = o.workers;
    lt.seed = o.seed;
    lt.augment = o.augment;
    lt.modality = parse_modality_policy(o.modality);
    lt.context = o.context;
    if (o.insert_lesions > 0) {
        lt.lesion = lesion_options(o, pre);
        lt.lesion_labels = lesion_labels(o, ds);
    }
    LoaderOptions lv = lt;
    lv.batch_size = o.batch;
    lv.shard_rank = 0;  // validation and BatchNorm statistics: given lists (a rank's share of them)
    lv.shard_count = 1;
    lv.lesion = {};  // never painted (augment is off too)
    lv.shuffle = false;
    lv.drop_last = false;
    lv.augment = false;
    ClassifierLoaders l;
    l.train = std::make_unique<DataLoader>(ds, split.train, pre, lt);
    const auto [begin, end] = shard_range(split.val.size(), o.dist.rank, o.dist.world_size);
    l.val_items.assign(split.val.begin() + static_cast<long>(begin), split.val.begin() + static_cast<long>(end));
    if (!l.val_items.empty()) l.val = std::make_unique<DataLoader>(ds, l.val_items, pre, lv);
    const auto plain = batchnorm_items(split.train, static_cast<size_t>(o.batch), o.dist.rank, o.dist.world_size);
    if (!plain.empty()) l.plain = std::make_unique<DataLoader>(ds, plain, pre, lv);
    return l;
}

class ClassifierTraining final : public train_detail::TrainingTask {
public:
    ClassifierTraining(const TrainOptions& o, const Dataset& ds, const Split& split, const PreprocessOptions& pre,
                       const fs::path& run, ClassifierImpl& model, torch::optim::Optimizer& opt,
                       ProcessGroup* group = nullptr)
        : o_(o), ds_(ds), split_(split), pre_(pre), run_(run), model_(model), opt_(opt), group_(group),
          sync_(group ? std::make_unique<GradientSync>(*group, model) : nullptr), weights_(loss_weights(o, ds, split)),
          loaders_(make_loaders(o, ds, split, pre)) {}

    // After the weights are in place (initialised or resumed): unet-ae's reconstruction pre-training
    // (new runs), the weight average and, resumed, its state; then the model files' metadata.
    void prepare(const train_detail::RunFolder& folder, const nlohmann::json& init_info);

    size_t batches_per_epoch() const override { return loaders_.train->batches_per_epoch(); }
    EpochStats train_epoch(int epoch, const TrainCallbacks& cb) override;
    EpochScore validate(int epoch, const EpochStats& train) override;
    void save(const fs::path& file) override { save_model(file, model_, meta_); }
    void load(const fs::path& file) override {
        LoadedModel last = load_model(file);
        train_detail::copy_weights(*last.model, model_);
    }
    nlohmann::json checkpoint_extra(int epoch, bool improved) override;
    std::vector<std::string> extra_files() const override { return {"ema"}; }
    void set_fine_tune(const train_detail::FineTune* fine_tune) { fine_tune_ = fine_tune; }

    // The final model: the best epoch's weights with thresholds chosen on validation (Youden's J),
    // its validation metrics, predictions and plots.
    TrainResult finish(train_detail::EpochLoop& loop, int epochs_run);

private:
    torch::Tensor loss(const torch::Tensor& logits, const torch::Tensor& labels) const;
    std::vector<std::vector<double>> predict_val(double& val_loss);
    // Every rank's block of validation probabilities in split_.val's order; the loss sums over the ranks.
    std::vector<std::vector<double>> gather_val(const std::vector<std::vector<double>>& mine, double& loss_sum,
                                                size_t& n);

    const TrainOptions& o_;
    const Dataset& ds_;
    const Split& split_;
    const PreprocessOptions& pre_;
    fs::path run_;
    ClassifierImpl& model_;
    torch::optim::Optimizer& opt_;
    ProcessGroup* group_;  // distributed training: gradients averaged over the ranks (null: one process)
    std::unique_ptr<GradientSync> sync_;  // with group_: the all-reduce overlapping backward
    LossWeights weights_;
    ClassifierLoaders loaders_;
    std::unique_ptr<WeightAverage> average_;
    const train_detail::FineTune* fine_tune_ = nullptr;
    nlohmann::json meta_;
    std::vector<std::vector<double>> val_probs_, best_val_probs_;
};

void ClassifierTraining::prepare(const train_detail::RunFolder& folder, const nlohmann::json& init_info) {
    nlohmann::json pretrain_info = nullptr;
    if (o_.pretrain_epochs > 0 && !folder.resumed()) {
        std::vector<double> losses;
        pretrain_reconstruction(model_, *loaders_.train, o_.pretrain_epochs, o_.lr, [&](int e, double l) {
            losses.push_back(l);
            logger().info("unet-ae pretraining epoch {}/{}: reconstruction MSE {:.5f}", e + 1, o_.pretrain_epochs, l);
        }, sync_.get());
        pretrain_info = {{"epochs", o_.pretrain_epochs}, {"reconstruction_mse", losses}};
        write_file_atomic(run_ / "pretrain.json", pretrain_info.dump(2) + "\n");
    } else if (folder.resumed() && fs::exists(run_ / "pretrain.json")) {
        pretrain_info = nlohmann::json::parse(read_file(run_ / "pretrain.json"));
    }
    average_ = std::make_unique<WeightAverage>(model_, o_.ema_epochs, loaders_.train->batches_per_epoch());
    const nlohmann::json& state = folder.state();
    if (folder.resumed()) {
        if (state.contains("best_val_probs")) best_val_probs_ = state["best_val_probs"].get<decltype(best_val_probs_)>();
        if (average_->enabled() && !state.value("ema", std::string()).empty()) {
            average_->restore(*load_model(run_ / state["ema"].get<std::string>()).model, state.value("ema_steps", 0));
        }
    }
    meta_ = {{"labels", ds_.label_names},
             {"multiclass", ds_.multiclass},
             {"preprocess", preprocess_to_json(pre_, o_.window, o_.modality)},
             {"hemoscan_version", kVersion},
             {"tta", o_.tta ? "hflip" : "none"},
             {"context", o_.context},
             {"trained_on", {{"data", o_.data}, {"fingerprint", ds_.fingerprint()}}}};
    if (!pretrain_info.is_null()) meta_["pretrain"] = pretrain_info;
    if (!init_info.is_null()) meta_["init"] = init_info;
}

torch::Tensor ClassifierTraining::loss(const torch::Tensor& logits, const torch::Tensor& labels) const {
    if (ds_.multiclass) {
        auto opts = torch::nn::functional::CrossEntropyFuncOptions();
        if (weights_.class_weight.defined()) opts = opts.weight(weights_.class_weight);
        // Mixed (soft) labels need the probability-target form; one-hot labels keep the index form,
        // whose weighted mean divides by the weights of the targets.
        if (o_.mixup > 0) return torch::nn::functional::cross_entropy(logits, labels, opts);
        return torch::nn::functional::cross_entropy(logits, labels.argmax(1), opts);
    }
    auto opts = torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions();
    if (weights_.pos_weight.defined()) opts = opts.pos_weight(weights_.pos_weight);
    return torch::nn::functional::binary_cross_entropy_with_logits(logits, labels, opts);
}

EpochStats ClassifierTraining::train_epoch(int epoch, const TrainCallbacks& cb) {
    DataLoader& loader = *loaders_.train;
    loader.start_epoch(static_cast<std::uint64_t>(epoch));
    Batch b;
    double loss_sum = 0;
    size_t seen = 0, batch_no = 0;
    while (loader.next(b)) {
        BatchTensors t = to_tensors(std::move(b));
        if (o_.mixup > 0) {
            // One draw per batch, from (seed, epoch, batch): a resumed run mixes the same pairs.
            const std::uint64_t seed = mix_seed(o_.seed ^ 0x6d69787570ULL, static_cast<std::uint64_t>(epoch), batch_no);
            train_detail::apply_mixup(t.images, t.labels, train_detail::draw_mixup(o_.mixup, t.images.size(0), seed));
        }
        opt_.zero_grad();
        auto l = loss(model_.forward(t.images), t.labels);
        // Each rank's loss is the mean over its equal share of the global batch: the mean of the ranks'
        // gradients is the gradient of the global batch's mean loss.
        if (sync_) {
            sync_->backward(l);
        } else {
            l.backward();
        }
        if (o_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model_.parameters(), o_.grad_clip);
        opt_.step();
        average_->update();
        const double lv = l.item<double>();
        if (!std::isfinite(lv)) throw Error("training diverged (loss " + std::to_string(lv) + "): lower `lr`");
        loss_sum += lv * static_cast<double>(t.indices.size());
        seen += t.indices.size();
        if (cb.batch_end) cb.batch_end(++batch_no, loss_sum / static_cast<double>(seen));
        b = Batch{};
    }
    if (group_) {  // the epoch's loss over every rank's items
        const std::vector<double> sums = group_->sum({loss_sum, static_cast<double>(seen)});
        loss_sum = sums[0];
        seen = static_cast<size_t>(sums[1]);
    }
    return {seen ? loss_sum / static_cast<double>(seen) : std::nan(""), seen};
}

std::vector<std::vector<double>> ClassifierTraining::predict_val(double& val_loss) {
    const size_t L = ds_.label_names.size();
    const std::vector<size_t>& mine = loaders_.val_items;  // all of split_.val without a group
    std::vector<std::vector<double>> probs(mine.size(), std::vector<double>(L));
    std::map<size_t, size_t> pos_of;
    for (size_t k = 0; k < mine.size(); ++k) pos_of[mine[k]] = k;
    model_.eval();
    torch::NoGradGuard ng;
    Batch b;
    double loss_sum = 0;
    size_t n = 0;
    if (loaders_.val) loaders_.val->start_epoch(0);
    while (loaders_.val && loaders_.val->next(b)) {
        BatchTensors t = to_tensors(std::move(b));
        auto logits = model_.forward(t.images);
        loss_sum += loss(logits, t.labels).item<double>() * static_cast<double>(t.indices.size());
        n += t.indices.size();
        auto p = probabilities(logits, ds_.multiclass);
        if (o_.tta) p = 0.5 * (p + probabilities(model_.forward(t.images.flip({3})), ds_.multiclass));
        p = p.contiguous();
        auto acc = p.accessor<float, 2>();
        for (size_t r = 0; r < t.indices.size(); ++r) {
            auto& row = probs[pos_of.at(t.indices[r])];
            for (size_t l = 0; l < L; ++l) row[l] = acc[static_cast<long>(r)][static_cast<long>(l)];
        }
        b = Batch{};
    }
    if (group_) probs = gather_val(probs, loss_sum, n);
    val_loss = n ? loss_sum / static_cast<double>(n) : std::nan("");
    return probs;
}

std::vector<std::vector<double>> ClassifierTraining::gather_val(const std::vector<std::vector<double>>& mine,
                                                                double& loss_sum, size_t& n) {
    const std::vector<double> sums = group_->sum({loss_sum, static_cast<double>(n)});
    loss_sum = sums[0];
    n = static_cast<size_t>(sums[1]);
    std::vector<std::vector<double>> probs = group_->all_gather_rows(mine, ds_.label_names.size());
    if (probs.size() != split_.val.size()) throw Error("validation: the ranks gathered a wrong number of values");
    return probs;
}

EpochScore ClassifierTraining::validate(int epoch, const EpochStats& train) {
    average_->swap();  // validate, keep and checkpoint the averaged weights (a no-op without `ema_epochs`)
    train_detail::recalibrate_batchnorm(model_, [&] {
        if (!loaders_.plain) return;
        loaders_.plain->start_epoch(0);
        Batch b;
        while (loaders_.plain->next(b)) {
            model_.features(to_tensors(std::move(b)).images);
            b = Batch{};
        }
    }, fine_tune_ ? fine_tune_->frozen_batchnorm(epoch) : std::vector<torch::nn::Module*>{}, group_);
    double val_loss = std::nan(""), val_auc = std::nan("");
    nlohmann::json aucs = nlohmann::json::object();
    val_probs_.clear();
    if (!split_.val.empty()) {
        val_probs_ = predict_val(val_loss);
        val_auc = label_aucs(ds_, split_.val, val_probs_, aucs);
    }
    // Early stopping and plateau follow validation AUC; without a usable AUC, minus the loss.
    // Validation loss breaks ties between epochs of equal AUC (AUC saturates at 1 on easy data).
    // Without a validation part every epoch "improves", so the last one is kept.
    const double monitor = !std::isnan(val_auc) ? val_auc - 1e-3 * (std::isnan(val_loss) ? 0.0 : std::min(val_loss, 10.0))
                           : !std::isnan(val_loss) ? -val_loss
                           : !split_.val.empty()   ? -train.loss
                                                   : static_cast<double>(epoch);
    return {monitor,
            {{"val_loss", train_detail::json_number(val_loss)}, {"val_auc", train_detail::json_number(val_auc)},
             {"auc", aucs}}};
}

nlohmann::json ClassifierTraining::checkpoint_extra(int epoch, bool improved) {
    if (improved) best_val_probs_ = val_probs_;
    std::string em;
    if (average_->enabled()) {
        em = "ema_e" + std::to_string(epoch) + ".pt";
        save_model(run_ / em, model_, meta_);
        average_->swap();  // back to the training weights
    }
    return {{"ema", em}, {"ema_steps", average_->steps()}, {"best_val_probs", best_val_probs_}};
}

TrainResult ClassifierTraining::finish(train_detail::EpochLoop& loop, int epochs_run) {
    LoadedModel best = load_model(run_ / "best.pt");
    PredictionTable table;
    table.label_names = ds_.label_names;
    table.multiclass = ds_.multiclass;
    for (size_t k = 0; k < split_.val.size() && k < best_val_probs_.size(); ++k) {
        table.add(ds_.items[split_.val[k]], best_val_probs_[k]);
    }
    std::vector<double> thresholds = weights_.threshold_priors;
    nlohmann::json metrics = nlohmann::json::object();
    if (table.size() > 0) {
        thresholds = choose_thresholds(table, weights_.threshold_priors);
        metrics = compute_metrics(table, thresholds, o_.seed);
        write_predictions_csv(run_ / "predictions.csv", table, thresholds);
        write_metric_plots(run_, table, thresholds);
    }
    metrics["best_epoch"] = loop.best_epoch();
    metrics["epochs_run"] = epochs_run;
    metrics["split"] = o_.folds > 0 ? "fold " + std::to_string(o_.fold) + " of " + std::to_string(o_.folds)
                       : split_.val.empty() ? std::string("none (all items trained)")
                                            : "holdout " + std::to_string(o_.val_fraction);
    nlohmann::json meta = meta_;
    meta["thresholds"] = thresholds;
    meta["best_epoch"] = loop.best_epoch();
    meta["validation"] = {{"macro_auc", metrics.value("macro_auc", nlohmann::json(nullptr))}, {"n", table.size()}};
    save_model(run_ / "model.pt", *best.model, meta);
    write_file_atomic(run_ / "metrics.json", metrics.dump(2) + "\n");
    loop.finish(*this);

    TrainResult result;
    result.model_path = run_ / "model.pt";
    result.metrics = metrics;
    result.epochs_run = epochs_run;
    result.best_epoch = loop.best_epoch();
    result.val_indices = split_.val;
    result.val_probs = best_val_probs_;
    return result;
}

}  // namespace

TrainResult train_classifier(const TrainOptions& options_in, const TrainCallbacks& cb, bool resume,
                             const Split* split_override, ProcessGroup* given_group) {
    TrainOptions o = options_in;
    validate_train_options(o);
    if (o.out.empty()) throw UsageError("`out` RUN is required");
    parse_modality_policy(o.modality);
    train_detail::use_threads(o);

    const Dataset ds = open_dataset(o.data, dataset_options_of(o));
    resolve_sequences(o, ds);
    if (ds.multiclass && ds.label_names.size() < 2) {
        throw InputError(o.data + ": a class-folder dataset needs at least two classes");
    }
    if (o.context > 0 && !ds.ordered) {
        throw InputError(o.data + ": `context` needs slices in study order: a manifest with a \"slice\" column, or the "
                         "RSNA layout");
    }
    const Split split = choose_split(o, ds, split_override);
    // Distributed: rank 0 keeps the run folder; the others run in a scratch copy that goes at the end.
    const std::shared_ptr<ProcessGroup> own_group = given_group ? nullptr : join_process_group(o.dist, o.dist_timeout_s);
    ProcessGroup* group = given_group ? given_group : own_group.get();
    train_detail::ScratchFolder scratch;
    if (group && o.dist.rank != 0) o.out = scratch.take_over(o.out, resume, o.dist.rank).string();
    train_detail::RunFolder folder(o, resume, ds.fingerprint());
    const PreprocessOptions pre = preprocess_options_of(o);
    if (o.insert_lesions > 0) {  // options that depend on the data are checked before anything is written
        lesion_options(o, pre);
        lesion_labels(o, ds);
    }
    folder.start(o,
                 {{"data_form", to_string(ds.form)},
                  {"labels", ds.label_names},
                  {"multiclass", ds.multiclass},
                  {"train_items", split.train.size()},
                  {"val_items", split.val.size()},
                  {"fine_tune", train_detail::fine_tune_settings(o).to_json()}},
                 [&](const fs::path& file) { write_split_csv(file, ds, split); });

    torch::manual_seed(o.seed);
    std::shared_ptr<ClassifierImpl> model = make_classifier(o, ds, pre);
    // Transfer learning: the starting weights come from another model file (a resumed run already
    // holds them, trained further, in its checkpoint). RUN/init.json says what was taken.
    const nlohmann::json init_info = train_detail::start_weights(o, resume, folder.path(), *model,
                                                                 [](const std::string& f) { return load_model(f); });
    const train_detail::FineTune fine_tune(
        train_detail::fine_tune_settings(o), *model,
        [&](const std::string& name) { return is_head_parameter(*model, name); }, o.model);
    std::unique_ptr<torch::optim::Optimizer> opt = fine_tune.make_optimizer(o);
    if (group) group->broadcast_module(*model);  // one start for all (the seed gives it anyway)
    ClassifierTraining task(o, ds, split, pre, folder.path(), *model, *opt, group);
    task.set_fine_tune(&fine_tune);
    train_detail::EpochLoop loop(
        folder, o, *model, *opt,
        {{"lr", "train_loss", "val_loss", "val_auc"}, "train_images_per_s", "auc", "auc_", ds.label_names},
        {"Validation AUC", "AUC", {{"validation AUC", "val_auc"}}}, &fine_tune);
    loop.restore(task);
    task.prepare(folder, init_info);
    const int epochs_run = loop.run(task, cb);
    TrainResult result = task.finish(loop, epochs_run);
    if (group && o.dist.rank != 0) result.model_path = fs::path(options_in.out) / "model.pt";  // rank 0's
    return result;
}

}  // namespace hemoscan

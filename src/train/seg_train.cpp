// Training a segmentation model (U-Net family, 2D on slices) into a run folder: the task-specific
// parts (cases, slice batches, Dice validation, post-processing) on the run skeleton both trainers
// share (train/run_loop.hpp: config.json, split.csv, checkpoints and --resume, log.csv, curves.png).
//
// Every case is loaded once and kept preprocessed (windows, resize) in memory; batches are drawn from
// the training slices, `bleed_fraction` of each from slices with foreground, and augmented (one draw
// for image and mask) in a prefetch thread. Validation runs on whole held-out cases at their own
// resolution, through the same mapping back as SegPredictor.
#include <spdlog/fmt/fmt.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <random>
#include <thread>

#include "hemoscan/augment/augment.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/dist/grad_sync.hpp"
#include "hemoscan/dist/process_group.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/models/seg_loss.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/evaluate/segmentation.hpp"
#include "hemoscan/infer/seg_predictor.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/train/segment.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/version.hpp"
#include "infer/seg_torch.hpp"
#include "train/fine_tune.hpp"
#include "train/optimizer.hpp"
#include "train/options.hpp"
#include "train/run_loop.hpp"

namespace hemoscan {

namespace fs = std::filesystem;
using seg_detail::PreparedSlice;
using train_detail::EpochScore;
using train_detail::EpochStats;

namespace {

void validate(const TrainOptions& o) {
    train_detail::validate_common_options(o);
    if (o.folds != 0)
        throw UsageError("segmentation trains on a holdout split: `folds` is not supported (use `val_fraction`)");
    if (!(o.val_fraction > 0 && o.val_fraction < 1)) throw UsageError("`val_fraction` must be in (0, 1)");
    if (!is_seg_model(o.model)) {
        std::string known;
        for (const auto& m : list_seg_models()) known += (known.empty() ? "" : ", ") + m.name;
        throw UsageError("`model` '" + o.model + "' is not a segmentation model (" + known + ")");
    }
    if (o.depth < 1 || o.depth > 6) throw UsageError("`depth` must be in 1..6");
    const SegModelInfo info = seg_model_info(o.model);
    if (info.fixed_depth > 0 && o.size % (1 << info.fixed_depth) != 0) {
        throw UsageError("`size` " + std::to_string(o.size) + " must be divisible by " +
                         std::to_string(1 << info.fixed_depth) + " for `model` " + o.model + " (" +
                         std::to_string(info.fixed_depth) + " levels)");
    }
    if (info.fixed_depth == 0 && o.size % (1 << o.depth) != 0) {
        throw UsageError("`size` " + std::to_string(o.size) + " must be divisible by 2^depth = " +
                         std::to_string(1 << o.depth) + " (`depth` " + std::to_string(o.depth) + ")");
    }
    if (!o.pretrained.empty() && info.encoder.empty()) {
        std::string with;
        for (const auto& m : list_seg_models()) {
            if (!m.encoder.empty()) with += (with.empty() ? "" : ", ") + m.name;
        }
        throw UsageError("`pretrained` needs a segmentation model with a pre-trainable encoder (" + with + "), not " +
                         o.model);
    }
    if (!(o.bleed_fraction >= 0 && o.bleed_fraction <= 1)) throw UsageError("`bleed_fraction` must be in [0, 1]");
    if (!(o.width > 0)) throw UsageError("`width` must be > 0");
    parse_seg_loss(o.loss);
    parse_modality_policy(o.modality);
    if (o.mixup != 0) throw UsageError("`mixup` is for classification, not `task` segment");
    if (o.insert_lesions != 0) throw UsageError("`insert_lesions` is for classification, not `task` segment");
    if (o.ema_epochs != 0) throw UsageError("`ema_epochs` is for classification, not `task` segment");
    if (o.pretrain_epochs != 0) throw UsageError("`pretrain_epochs` is for `model` unet-ae, not `task` segment");
    if (o.context < 0 || o.context > 8) throw UsageError("`context` must be in 0..8 slices on each side");
    if (o.context > 0 && o.crop_head) {
        throw UsageError("`context` needs `crop_head` false: the slices of a volume must share one geometry");
    }
}

// One case, preprocessed, with its truth at native resolution (validation scores against it).
struct CaseData {
    std::vector<PreparedSlice> slices;  // each slice's own input (no context) and mask at model size, not augmented
    LabelSlices truth;                  // native resolution
    bool foreground = false;
};

// Slice k as the model sees it: with a slice context its neighbours are stacked here, per use, so
// that the data set is held once in memory rather than 2 * context + 1 times.
PreparedSlice model_input(const CaseData& cd, size_t k, int context) {
    PreparedSlice p = cd.slices[k];
    p.sample.image = seg_detail::context_image(cd.slices, k, context);
    return p;
}

CaseData load_case(const SegDataset& ds, size_t index, const PreprocessOptions& pre, int context) {
    SegVolume sv = load_seg_case(ds, index);
    CaseData cd;
    for (int k = 0; k < sv.image.depth(); ++k) {
        cd.slices.push_back(seg_detail::prepare_slice(sv.image.slices[static_cast<size_t>(k)],
                                                      slice_meta_of(sv.image, k), pre,
                                                      sv.mask.slices[static_cast<size_t>(k)]));
        cd.foreground = cd.foreground || cv::countNonZero(sv.mask.slices[static_cast<size_t>(k)]) > 0;
    }
    seg_detail::check_slice_context(cd.slices, context);
    cd.truth = std::move(sv.mask.slices);
    return cd;
}

// Loads every case with `workers` threads; the first failing case (by index) is reported.
std::vector<CaseData> load_cases(const SegDataset& ds, const PreprocessOptions& pre, int context, int workers) {
    std::vector<CaseData> cases(ds.cases.size());
    std::vector<std::exception_ptr> errors(ds.cases.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
        for (size_t i = next++; i < cases.size(); i = next++) {
            try {
                cases[i] = load_case(ds, i, pre, context);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < std::max(1, workers); ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    for (auto& e : errors) {
        if (e) std::rethrow_exception(e);
    }
    return cases;
}

struct SlicePick {
    size_t c = 0;  // case
    size_t k = 0;  // slice
};

struct SegBatch {
    torch::Tensor x, y;
};

// Segments the validation cases once and scores every candidate minimum component volume on them
// by the mean per-case Dice of all foreground (any bleed when the data has bleed classes). Returns
// {"min_component_ml", "dice", "dice_without", "candidates": {"<ml>": dice}}.
nlohmann::json choose_min_component(const fs::path& model, const SegDataset& val, int threads) {
    static const double kCandidates[] = {0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0};
    SegPredictor predictor(model, threads);
    predictor.set_min_component_ml(0);
    const std::vector<int>& fg = val.bleed_classes;
    std::vector<double> sums(std::size(kCandidates), 0.0);
    for (size_t i = 0; i < val.cases.size(); ++i) {
        const SegVolume sv = load_seg_case(val, i);
        const SegmentationResult r = predictor.segment(sv.image);
        const LabelSlices truth = class_mask(sv.mask.slices, kAnyForeground, fg);
        for (size_t c = 0; c < std::size(kCandidates); ++c) {
            LabelSlices pred = r.labels.slices;
            for (auto& m : pred) m = m.clone();
            remove_small_components(pred, sv.image.geometry.spacing, kCandidates[c]);
            sums[c] += overlap(class_mask(pred, kAnyForeground, fg), truth).dice();
        }
    }
    size_t best = 0;
    nlohmann::json candidates = nlohmann::json::object();
    for (size_t c = 0; c < sums.size(); ++c) {
        candidates[fmt::format("{:g}", kCandidates[c])] = sums[c] / static_cast<double>(val.cases.size());
        if (sums[c] > sums[best] + 1e-9) best = c;  // ties keep the smaller (less intrusive) value
    }
    const double n = static_cast<double>(val.cases.size());
    return {{"min_component_ml", kCandidates[best]},
            {"chosen_on", "validation"},
            {"dice", sums[best] / n},
            {"dice_without", sums[0] / n},
            {"candidates", candidates}};
}


// The training slices of the split's cases: all, and those with foreground.
struct SlicePool {
    std::vector<SlicePick> all, fg;
};

SlicePool slice_pool(const std::vector<CaseData>& cases, const std::vector<size_t>& train) {
    SlicePool pool;
    for (size_t i : train) {
        for (size_t k = 0; k < cases[i].slices.size(); ++k) {
            pool.all.push_back({i, k});
            if (cv::countNonZero(cases[i].slices[k].sample.mask) > 0) pool.fg.push_back({i, k});
        }
    }
    return pool;
}

// Grouped holdout of whole cases, stratified on "has foreground"; `groups` gets one item per case.
Split case_split(const TrainOptions& o, const SegDataset& ds, const std::vector<CaseData>& cases, Dataset& groups) {
    groups.root = ds.root;
    groups.label_names = {"foreground"};
    for (size_t i = 0; i < ds.cases.size(); ++i) {
        DatasetItem item;
        item.path = ds.cases[i].images.at(0);
        item.id = ds.cases[i].id;
        item.patient = ds.cases[i].patient;
        item.labels = {cases[i].foreground ? 1.f : 0.f};
        groups.items.push_back(std::move(item));
    }
    const Split split = holdout_split(groups, o.val_fraction, o.seed);
    if (split.train.empty()) throw InputError(o.data + ": no training cases after the split");
    return split;
}

std::shared_ptr<SegmenterImpl> make_segmenter(const TrainOptions& o, const PreprocessOptions& pre, int classes) {
    SegModelConfig mc;
    mc.name = o.model;
    mc.in_channels = pre.channels() * (2 * o.context + 1);
    mc.num_classes = classes;
    mc.depth = o.depth;
    mc.base_width = static_cast<int>(std::lround(32.0 * o.width));
    mc.dropout = o.dropout.value_or(0.0);
    return create_segmenter(mc);
}

class SegmenterTraining final : public train_detail::TrainingTask {
public:
    SegmenterTraining(const TrainOptions& o, const SegDataset& ds, std::vector<CaseData>& cases, const Split& split,
                      const PreprocessOptions& pre, SegmenterImpl& model, torch::optim::Optimizer& opt,
                      SlicePool pool, ProcessGroup* group = nullptr)
        : o_(o), ds_(ds), cases_(cases), split_(split), pre_(pre), model_(model), opt_(opt), group_(group),
          sync_(group ? std::make_unique<GradientSync>(*group, model) : nullptr),
          loss_kind_(parse_seg_loss(o.loss)), pool_(std::move(pool)), B_(static_cast<size_t>(o.batch)),
          n_fg_(pool_.fg.empty() ? 0 : static_cast<size_t>(std::lround(o.bleed_fraction * static_cast<double>(B_)))) {}

    void set_meta(nlohmann::json meta) { meta_ = std::move(meta); }
    void set_fine_tune(const train_detail::FineTune* fine_tune) { fine_tune_ = fine_tune; }
    size_t batches_per_epoch() const override { return std::max<size_t>(1, pool_.all.size() / B_); }
    EpochStats train_epoch(int epoch, const TrainCallbacks& cb) override;
    EpochScore validate(int epoch, const EpochStats& train) override;
    void save(const fs::path& file) override { save_segmenter(file, model_, meta_); }
    void load(const fs::path& file) override {
        LoadedSegmenter last = load_segmenter(file);
        train_detail::copy_weights(*last.model, model_);
    }
    // The final model: the best epoch's weights, the post-processing chosen on the validation cases,
    // metrics.json from evaluating it on them.
    TrainResult finish(train_detail::EpochLoop& loop, const fs::path& run, int epochs_run, int threads);

private:
    SegBatch make_batch(int epoch, size_t b) const;
    void fill_sample(const SlicePick& pick, int epoch, size_t index, float* x, int64_t* y) const;
    // Probabilities of one validation case mapped back to its own resolution; adds to the loss sums.
    LabelSlices predict_case(const CaseData& cd, double& loss_sum, size_t& loss_n);

    const TrainOptions& o_;
    const SegDataset& ds_;
    std::vector<CaseData>& cases_;
    const Split& split_;
    const PreprocessOptions& pre_;
    SegmenterImpl& model_;
    torch::optim::Optimizer& opt_;
    ProcessGroup* group_;  // distributed: this rank's share of each global batch, gradients averaged
    std::unique_ptr<GradientSync> sync_;  // with group_: the all-reduce overlapping backward
    SegLoss loss_kind_;
    SlicePool pool_;
    size_t B_, n_fg_;
    const train_detail::FineTune* fine_tune_ = nullptr;
    nlohmann::json meta_;
};

// One augmented sample into the batch's memory: image planes at x, mask at y.
void SegmenterTraining::fill_sample(const SlicePick& pick, int epoch, size_t index, float* x, int64_t* y) const {
    const int C = pre_.channels() * (2 * o_.context + 1), S = o_.size;
    const Sample& base = cases_[pick.c].slices[pick.k].sample;
    Sample s;
    s.image = o_.context > 0 ? seg_detail::context_image(cases_[pick.c].slices, pick.k, o_.context)
                             : base.image.clone();  // a stacked image is already a copy
    s.mask = base.mask.clone();
    AugmentOptions aug;
    aug.enabled = o_.augment;
    if (o_.augment) augment(s, aug, mix_seed(o_.seed, static_cast<std::uint64_t>(epoch), index));
    const size_t plane = static_cast<size_t>(S) * S;
    std::vector<cv::Mat> planes;
    for (int k = 0; k < C; ++k) planes.emplace_back(S, S, CV_32FC1, x + k * plane);
    if (C == 1) {
        s.image.copyTo(planes[0]);
    } else {
        cv::split(s.image, planes.data());
    }
    for (int r = 0; r < S; ++r) {
        const uchar* row = s.mask.ptr<uchar>(r);
        for (int c = 0; c < S; ++c) *y++ = row[c];
    }
}

SegBatch SegmenterTraining::make_batch(int epoch, size_t b) const {
    // The picks and each sample's augmentation come from (seed, epoch, batch, position) only.
    std::mt19937_64 rng(mix_seed(o_.seed ^ 0x5E65EEDULL, static_cast<std::uint64_t>(epoch), b));
    std::vector<SlicePick> picks(B_);
    for (size_t j = 0; j < B_; ++j) {
        picks[j] = j < n_fg_ ? pool_.fg[rng() % pool_.fg.size()] : pool_.all[rng() % pool_.all.size()];
    }
    // Distributed: the global batch's positions rank, rank + N, ... (one process: all of them).
    const size_t ranks = static_cast<size_t>(o_.dist.world_size), rank = static_cast<size_t>(o_.dist.rank);
    std::vector<size_t> mine;
    for (size_t j = rank; j < B_; j += ranks) mine.push_back(j);
    const size_t n = mine.size();
    const int C = pre_.channels() * (2 * o_.context + 1), S = o_.size;
    SegBatch out;
    out.x = torch::empty({static_cast<int64_t>(n), C, S, S}, torch::kFloat32);
    out.y = torch::empty({static_cast<int64_t>(n), S, S}, torch::kInt64);
    const size_t plane = static_cast<size_t>(S) * S;
    auto fill = [&](size_t i) {
        const size_t j = mine[i];
        fill_sample(picks[j], epoch, b * B_ + j, out.x.data_ptr<float>() + i * C * plane,
                    out.y.data_ptr<int64_t>() + i * plane);
    };
    const size_t w = static_cast<size_t>(std::clamp(o_.workers, 1, static_cast<int>(n)));
    if (w <= 1) {
        for (size_t i = 0; i < n; ++i) fill(i);
        return out;
    }
    std::vector<std::thread> threads;
    for (size_t t = 0; t < w; ++t) {
        threads.emplace_back([&, t] {
            for (size_t i = t; i < n; i += w) fill(i);
        });
    }
    for (auto& t : threads) t.join();
    return out;
}

EpochStats SegmenterTraining::train_epoch(int epoch, const TrainCallbacks& cb) {
    const size_t batches = batches_per_epoch();
    double loss_sum = 0;
    size_t seen = 0;
    std::future<SegBatch> next = std::async(std::launch::async, [this, epoch] { return make_batch(epoch, 0); });
    for (size_t b = 0; b < batches; ++b) {
        SegBatch batch = next.get();
        if (b + 1 < batches) {
            next = std::async(std::launch::async, [this, epoch, b] { return make_batch(epoch, b + 1); });
        }
        opt_.zero_grad();
        torch::Tensor loss = seg_loss(model_.forward(batch.x), batch.y, loss_kind_);
        // Each rank's loss is its share's (the batch Dice over that share, as with PyTorch's DDP).
        if (sync_) {
            sync_->backward(loss);
        } else {
            loss.backward();
        }
        if (o_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model_.parameters(), o_.grad_clip);
        opt_.step();
        const double lv = loss.item<double>();
        if (!std::isfinite(lv)) throw Error("training diverged (loss " + std::to_string(lv) + "): lower `lr`");
        const size_t n = static_cast<size_t>(batch.x.size(0));
        loss_sum += lv * static_cast<double>(n);
        seen += n;
        if (cb.batch_end) cb.batch_end(b + 1, loss_sum / static_cast<double>(seen));
    }
    if (group_) {  // the epoch's loss over every rank's slices
        const std::vector<double> sums = group_->sum({loss_sum, static_cast<double>(seen)});
        loss_sum = sums[0];
        seen = static_cast<size_t>(sums[1]);
    }
    return {loss_sum / static_cast<double>(seen), seen};
}

LabelSlices SegmenterTraining::predict_case(const CaseData& cd, double& loss_sum, size_t& loss_n) {
    LabelSlices pred(cd.slices.size());
    for (size_t start = 0; start < cd.slices.size(); start += B_) {
        std::vector<PreparedSlice> inputs;
        for (size_t k = start; k < std::min(cd.slices.size(), start + B_); ++k) {
            inputs.push_back(model_input(cd, k, o_.context));
        }
        std::vector<const PreparedSlice*> chunk;
        for (const auto& p : inputs) chunk.push_back(&p);
        torch::Tensor logits;
        torch::Tensor probs =
            seg_detail::forward_probabilities(model_, seg_detail::images_tensor(chunk), o_.tta, &logits);
        loss_sum += seg_loss(logits, seg_detail::masks_tensor(chunk), loss_kind_).item<double>() *
                    static_cast<double>(chunk.size());
        loss_n += chunk.size();
        for (size_t j = 0; j < chunk.size(); ++j) {
            pred[start + j] =
                seg_detail::labels_to_source(seg_detail::probability_planes(probs, static_cast<int64_t>(j)), *chunk[j]);
        }
    }
    return pred;
}

// BatchNorm statistics from at most ~16 batches of un-augmented training slices spread over the set;
// then whole validation cases at their own resolution: Dice per case, averaged.
EpochScore SegmenterTraining::validate(int epoch, const EpochStats& train) {
    train_detail::recalibrate_batchnorm(model_, [&] {
        const auto& all = pool_.all;
        const size_t step = std::max<size_t>(1, all.size() / (B_ * 16));
        const size_t ranks = static_cast<size_t>(o_.dist.world_size), rank = static_cast<size_t>(o_.dist.rank);
        std::vector<PreparedSlice> inputs;
        size_t batch_no = 0, in_batch = 0;  // distributed: rank r feeds batches r, r + N, ... (combined by batch counts)
        for (size_t i = 0; i < all.size(); i += step) {
            if (batch_no % ranks == rank) inputs.push_back(model_input(cases_[all[i].c], all[i].k, o_.context));
            if (++in_batch == B_ || i + step >= all.size()) {
                std::vector<const PreparedSlice*> chunk;
                for (const auto& p : inputs) chunk.push_back(&p);
                if (chunk.size() > 1) model_.forward(seg_detail::images_tensor(chunk));
                inputs.clear();
                in_batch = 0;
                ++batch_no;
            }
        }
    }, fine_tune_ ? fine_tune_->frozen_batchnorm(epoch) : std::vector<torch::nn::Module*>{}, group_);
    const int K = static_cast<int>(ds_.class_names.size());
    double loss = std::nan(""), dice_any = std::nan(""), dice_mean = std::nan("");
    nlohmann::json dice = nlohmann::json::object();
    if (!split_.val.empty()) {
        model_.eval();
        torch::NoGradGuard ng;
        std::vector<double> dice_sum(static_cast<size_t>(K), 0.0);
        double any_sum = 0, loss_sum = 0;
        size_t loss_n = 0;
        // Distributed: each rank its block of the cases, the sums added over the ranks.
        const auto [begin, end] = shard_range(split_.val.size(), o_.dist.rank, o_.dist.world_size);
        for (size_t v = begin; v < end; ++v) {
            const size_t i = split_.val[v];
            const LabelSlices pred = predict_case(cases_[i], loss_sum, loss_n);
            const auto ov = seg_detail::case_overlap(pred, cases_[i].truth, K, ds_.bleed_classes);
            for (int c = 1; c < K; ++c) dice_sum[static_cast<size_t>(c)] += ov.classes[static_cast<size_t>(c)].dice();
            any_sum += ov.any.dice();
        }
        if (group_) {
            std::vector<double> all = dice_sum;
            all.insert(all.end(), {any_sum, loss_sum, static_cast<double>(loss_n)});
            all = group_->sum(all);
            const auto k = static_cast<size_t>(K);
            std::copy(all.begin(), all.begin() + K, dice_sum.begin());
            any_sum = all[k];
            loss_sum = all[k + 1];
            loss_n = static_cast<size_t>(all[k + 2]);
        }
        const double n = static_cast<double>(split_.val.size());
        double mean = 0;
        for (int c = 1; c < K; ++c) {
            dice[ds_.class_names[static_cast<size_t>(c)]] = dice_sum[static_cast<size_t>(c)] / n;
            mean += dice_sum[static_cast<size_t>(c)] / n;
        }
        dice_mean = mean / (K - 1);
        if (!ds_.bleed_classes.empty()) dice_any = any_sum / n;
        loss = loss_n ? loss_sum / static_cast<double>(loss_n) : std::nan("");
    }
    const double score = std::isnan(dice_any) ? dice_mean : 0.5 * (dice_any + dice_mean);
    // Higher is better; the validation loss breaks ties (Dice saturates on easy data).
    const double monitor =
        !std::isnan(score) ? score - 1e-4 * (std::isnan(loss) ? 0.0 : std::min(loss, 10.0)) : -train.loss;
    return {monitor,
            {{"val_loss", train_detail::json_number(loss)},
             {"val_dice_any", train_detail::json_number(dice_any)},
             {"val_dice_mean", train_detail::json_number(dice_mean)},
             {"dice", dice}}};
}

TrainResult SegmenterTraining::finish(train_detail::EpochLoop& loop, const fs::path& run, int epochs_run,
                                      int threads) {
    cases_.clear();  // the evaluation below reads the validation cases again, at their own resolution
    LoadedSegmenter best = load_segmenter(run / "best.pt");
    nlohmann::json meta = meta_;
    meta["best_epoch"] = loop.best_epoch();
    const nlohmann::json& best_row = loop.best_row();
    meta["validation"] = {
        {"dice_any", best_row["val_dice_any"]}, {"dice_mean", best_row["val_dice_mean"]}, {"cases", split_.val.size()}};
    save_segmenter(run / "model.pt", *best.model, meta);

    nlohmann::json metrics = nlohmann::json::object();
    if (!split_.val.empty()) {
        SegDataset val = ds_;
        val.cases.clear();
        for (size_t i : split_.val) val.cases.push_back(ds_.cases[i]);
        // Post-processing chosen on the validation cases (as nnU-Net does): the smallest foreground
        // component volume kept, whichever candidate gives the best mean Dice per case (a case
        // without a finding counts 1 when nothing is found, so stray specks are paid for).
        const nlohmann::json choice = choose_min_component(run / "model.pt", val, threads);
        meta["postprocess"] = choice;
        save_segmenter(run / "model.pt", *best.model, meta);
        logger().info(
            "post-processing: foreground components below {} mL removed (validation Dice {:.4f}, {:.4f} without)",
            choice["min_component_ml"].get<double>(), choice["dice"].get<double>(),
            choice["dice_without"].get<double>());
        SegPredictor predictor(run / "model.pt", threads);
        metrics = evaluate_segmentation(predictor, val, run);
    }
    metrics["best_epoch"] = loop.best_epoch();
    metrics["epochs_run"] = epochs_run;
    metrics["split"] = "holdout " + std::to_string(o_.val_fraction);
    write_file_atomic(run / "metrics.json", metrics.dump(2) + "\n");
    loop.finish(*this);

    TrainResult result;
    result.model_path = run / "model.pt";
    result.metrics = metrics;
    result.epochs_run = epochs_run;
    result.best_epoch = loop.best_epoch();
    result.val_indices = split_.val;
    return result;
}

}  // namespace

TrainResult train_segmenter(const TrainOptions& options_in, const TrainCallbacks& cb, bool resume) {
    TrainOptions o = options_in;
    o.task = "segment";
    validate(o);
    if (o.out.empty()) throw UsageError("`out` RUN is required");
    const int threads = train_detail::use_threads(o);
    const SegDataset ds = open_seg_dataset(o.data);
    // Distributed, as train_classifier: rank 0 keeps the run folder, the others a scratch copy.
    const std::shared_ptr<ProcessGroup> group = join_process_group(o.dist, o.dist_timeout_s);
    train_detail::ScratchFolder scratch;
    if (group && o.dist.rank != 0) o.out = scratch.take_over(o.out, resume, o.dist.rank).string();
    train_detail::RunFolder folder(o, resume, seg_detail::fingerprint(ds));

    const PreprocessOptions pre = preprocess_options_of(o);
    const auto t_load = std::chrono::steady_clock::now();
    std::vector<CaseData> cases = load_cases(ds, pre, o.context, o.workers);
    Dataset groups;
    const Split split = case_split(o, ds, cases, groups);
    for (size_t i : split.train) cases[i].truth.clear();  // only validation needs the native truth
    SlicePool pool = slice_pool(cases, split.train);
    logger().info(
        "segmentation data: {} cases ({} train, {} validation), {} training slices ({} with foreground), "
        "loaded in {:.1f} s",
        ds.size(), split.train.size(), split.val.size(), pool.all.size(), pool.fg.size(),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());
    folder.start(o,
                 {{"data_form", ds.form},
                  {"classes", ds.class_names},
                  {"bleed_classes", ds.bleed_classes},
                  {"train_cases", split.train.size()},
                  {"val_cases", split.val.size()},
                  {"train_slices", pool.all.size()},
                  {"train_slices_with_foreground", pool.fg.size()},
                  {"fine_tune", train_detail::fine_tune_settings(o).to_json()}},
                 [&](const fs::path& file) { write_split_csv(file, groups, split); });

    torch::manual_seed(o.seed);
    std::shared_ptr<SegmenterImpl> model = make_segmenter(o, pre, static_cast<int>(ds.class_names.size()));
    // Transfer learning, as train_classifier: RUN/init.json says what was taken.
    // `pretrained` weights are a classifier's: they load into the encoder.
    const nlohmann::json init_info = train_detail::start_weights(
        o, resume, folder.path(), *model, [](const std::string& f) { return load_segmenter(f); }, model->encoder());
    // The encoder is the backbone of fine-tuning; a model without one has no split.
    const train_detail::FineTune fine_tune(
        train_detail::fine_tune_settings(o), *model,
        [&](const std::string& name) { return model->encoder() == nullptr || name.rfind("encoder", 0) != 0; }, o.model);
    std::unique_ptr<torch::optim::Optimizer> opt = fine_tune.make_optimizer(o);
    if (group) group->broadcast_module(*model);
    SegmenterTraining task(o, ds, cases, split, pre, *model, *opt, std::move(pool), group.get());
    task.set_fine_tune(&fine_tune);
    nlohmann::json meta = {{"task", "segment"},
                           {"class_names", ds.class_names},
                           {"bleed_classes", ds.bleed_classes},
                           {"channel_names", ds.channel_names},
                           {"preprocess", preprocess_to_json(pre, o.window, o.modality)},
                           {"tta", o.tta ? "hflip" : "none"},
                           {"loss", o.loss},
                           {"context", o.context},
                           {"hemoscan_version", kVersion},
                           {"trained_on", {{"data", o.data}, {"fingerprint", folder.fingerprint()}}}};
    if (!init_info.is_null()) meta["init"] = init_info;
    task.set_meta(meta);
    const std::vector<std::string> classes(ds.class_names.begin() + 1, ds.class_names.end());
    train_detail::EpochLoop loop(folder, o, *model, *opt,
                                 {{"lr", "train_loss", "val_loss", "val_dice_any", "val_dice_mean"},
                                  "train_slices_per_s",
                                  "dice",
                                  "dice_",
                                  classes},
                                 {"Validation Dice", "Dice", {{"Dice any bleed", "val_dice_any"},
                                                              {"Dice mean of classes", "val_dice_mean"}}},
                                 &fine_tune);
    loop.restore(task);
    const int epochs_run = loop.run(task, cb);
    TrainResult result = task.finish(loop, folder.path(), epochs_run, threads);
    if (group && o.dist.rank != 0) result.model_path = fs::path(options_in.out) / "model.pt";  // rank 0's
    return result;
}

}  // namespace hemoscan

// Training a segmentation model (U-Net family, 2D on slices) into a run folder. Follows the
// classification trainer's conventions: config.json, split.csv, per-epoch checkpoints with state.json
// as the commit point (--resume), log.csv, curves.png, best epoch by validation, model.pt, metrics.json.
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
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "hemoscan/augment/augment.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/models/seg_loss.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/report/plot.hpp"
#include "hemoscan/train/schedule.hpp"
#include "hemoscan/evaluate/segmentation.hpp"
#include "hemoscan/infer/seg_predictor.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/train/segment.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/runtime.hpp"
#include "hemoscan/version.hpp"
#include "train/optimizer.hpp"
#include "infer/seg_torch.hpp"

namespace hemoscan {

namespace fs = std::filesystem;
using seg_detail::PreparedSlice;

namespace {

void validate(const TrainOptions& o) {
    if (o.epochs < 1) throw UsageError("`epochs` must be >= 1");
    if (o.batch < 1) throw UsageError("`batch` must be >= 1");
    if (!(o.lr > 0)) throw UsageError("`lr` must be > 0");
    if (o.weight_decay < 0) throw UsageError("`weight_decay` must be >= 0");
    if (o.size < 16 || o.size > 4096) throw UsageError("`size` must be in 16..4096");
    if (o.optimizer != "adam" && o.optimizer != "adamw") {
        throw UsageError("unknown `optimizer` '" + o.optimizer + "' (adam, adamw)");
    }
    if (o.folds != 0)
        throw UsageError("segmentation trains on a holdout split: `folds` is not supported (use `val_fraction`)");
    if (!(o.val_fraction > 0 && o.val_fraction < 1)) throw UsageError("`val_fraction` must be in (0, 1)");
    if (o.median != 0 && (o.median < 3 || o.median % 2 == 0)) {
        throw UsageError("`median` must be 0 (off) or an odd number >= 3");
    }
    if (!is_seg_model(o.model)) {
        std::string known;
        for (const auto& m : list_seg_models()) known += (known.empty() ? "" : ", ") + m.name;
        throw UsageError("`model` '" + o.model + "' is not a segmentation model (" + known + ")");
    }
    if (o.depth < 1 || o.depth > 6) throw UsageError("`depth` must be in 1..6");
    if (o.size % (1 << o.depth) != 0) {
        throw UsageError("`size` " + std::to_string(o.size) + " must be divisible by 2^depth = " +
                         std::to_string(1 << o.depth) + " (`depth` " + std::to_string(o.depth) + ")");
    }
    if (!(o.bleed_fraction >= 0 && o.bleed_fraction <= 1)) throw UsageError("`bleed_fraction` must be in [0, 1]");
    if (!(o.width > 0)) throw UsageError("`width` must be > 0");
    parse_seg_loss(o.loss);
    parse_modality_policy(o.modality);
    if (o.mixup != 0) throw UsageError("`mixup` is for classification, not `task` segment");
    if (o.insert_lesions != 0) throw UsageError("`insert_lesions` is for classification, not `task` segment");
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

std::string fmt_num(double v, int prec = 4) {
    return std::isfinite(v) ? fmt::format("{:.{}f}", v, prec) : std::string();
}

void write_log_csv(const fs::path& file, const nlohmann::json& history, const std::vector<std::string>& classes) {
    std::ostringstream ss;
    ss << "epoch,lr,train_loss,val_loss,val_dice_any,val_dice_mean,seconds,train_slices_per_s";
    for (size_t c = 1; c < classes.size(); ++c) ss << ",dice_" << classes[c];
    ss << "\n";
    for (const auto& row : history) {
        auto num = [&](const char* k) { return row[k].is_null() ? std::string() : fmt_num(row[k].get<double>(), 6); };
        ss << row["epoch"].get<int>() << ',' << num("lr") << ',' << num("train_loss") << ',' << num("val_loss") << ','
           << num("val_dice_any") << ',' << num("val_dice_mean") << ',' << fmt_num(row["seconds"].get<double>(), 1)
           << ',' << fmt_num(row.value("train_slices_per_s", 0.0), 1);
        for (size_t c = 1; c < classes.size(); ++c) {
            const auto& d = row["dice"];
            ss << ','
               << (d.contains(classes[c]) && !d[classes[c]].is_null() ? fmt_num(d[classes[c]].get<double>(), 6) : "");
        }
        ss << "\n";
    }
    write_file_atomic(file, ss.str());
}

void write_curves(const fs::path& file, const nlohmann::json& history) {
    Series tl{"train loss", {}, {}}, vl{"validation loss", {}, {}}, da{"Dice any bleed", {}, {}},
        dm{"Dice mean of classes", {}, {}};
    auto add = [](Series& s, double x, const nlohmann::json& v) {
        if (v.is_null()) return;
        s.x.push_back(x);
        s.y.push_back(v.get<double>());
    };
    for (const auto& row : history) {
        const double e = row["epoch"].get<int>() + 1;
        add(tl, e, row["train_loss"]);
        add(vl, e, row["val_loss"]);
        add(da, e, row["val_dice_any"]);
        add(dm, e, row["val_dice_mean"]);
    }
    PlotOptions lo;
    lo.title = "Loss";
    lo.x_label = "epoch";
    lo.y_label = "loss";
    lo.width = 640;
    lo.height = 420;
    PlotOptions dopt = lo;
    dopt.title = "Validation Dice";
    dopt.y_label = "Dice";
    dopt.y_unit_range = true;
    std::vector<Series> losses{tl};
    if (!vl.x.empty()) losses.push_back(vl);
    std::vector<Series> dices;
    if (!da.x.empty()) dices.push_back(da);
    if (!dm.x.empty()) dices.push_back(dm);
    cv::Mat left = line_plot(losses, lo);
    cv::Mat right =
        dices.empty() ? cv::Mat(left.size(), left.type(), cv::Scalar(255, 255, 255)) : line_plot(dices, dopt);
    cv::Mat both;
    cv::hconcat(left, right, both);
    save_plot(file, both);
}

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

}  // namespace

TrainResult train_segmenter(const TrainOptions& options_in, const TrainCallbacks& cb, bool resume) {
    TrainOptions o = options_in;
    o.task = "segment";
    validate(o);
    const fs::path run(o.out);
    if (run.empty()) throw UsageError("`out` RUN is required");
    const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(threads);
    const SegLoss loss_kind = parse_seg_loss(o.loss);

    SegDataset ds = open_seg_dataset(o.data);
    const std::string fingerprint = seg_detail::fingerprint(ds);
    const int K = static_cast<int>(ds.class_names.size());

    fs::path state_file = run / "state.json";
    nlohmann::json state = nlohmann::json::object();
    if (resume) {
        if (!fs::exists(state_file)) throw InputError(state_file.string() + ": nothing to resume (no checkpoint)");
        state = nlohmann::json::parse(read_file(state_file));
        if (state.value("fingerprint", std::string()) != fingerprint) {
            throw InputError(o.data + ": the data changed since " + run.string() +
                             " was started (fingerprint differs)");
        }
        if (state.value("finished", false)) {
            throw UsageError(run.string() + ": this run has already finished (" +
                             std::to_string(state["epoch_done"].get<int>() + 1) + " epochs)");
        }
    } else if (fs::exists(state_file) || fs::exists(run / "model.pt")) {
        throw UsageError(run.string() + " already holds a run: use `resume` " + run.string() + " or another `out`");
    }

    const PreprocessOptions pre = preprocess_options_of(o);
    const auto t_load = std::chrono::steady_clock::now();
    std::vector<CaseData> cases = load_cases(ds, pre, o.context, o.workers);

    // Grouped holdout of whole cases, stratified on "has foreground".
    Dataset groups;
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
    for (size_t i : split.train) cases[i].truth.clear();  // only validation needs the native truth

    std::vector<SlicePick> all, fg;
    for (size_t i : split.train) {
        for (size_t k = 0; k < cases[i].slices.size(); ++k) {
            all.push_back({i, k});
            if (cv::countNonZero(cases[i].slices[k].sample.mask) > 0) fg.push_back({i, k});
        }
    }
    logger().info(
        "segmentation data: {} cases ({} train, {} validation), {} training slices ({} with foreground), "
        "loaded in {:.1f} s",
        ds.size(), split.train.size(), split.val.size(), all.size(), fg.size(),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());

    fs::create_directories(run);
    if (!resume) {
        nlohmann::json config = {{"hemoscan_version", kVersion},
                                 {"command", "train"},
                                 {"task", "segment"},
                                 {"options", train_options_to_json(o)},
                                 {"data_fingerprint", fingerprint},
                                 {"data_form", ds.form},
                                 {"classes", ds.class_names},
                                 {"bleed_classes", ds.bleed_classes},
                                 {"train_cases", split.train.size()},
                                 {"val_cases", split.val.size()},
                                 {"train_slices", all.size()},
                                 {"train_slices_with_foreground", fg.size()},
                                 {"runtime", runtime_json()}};
        write_file_atomic(run / "config.json", config.dump(2) + "\n");
        write_split_csv(run / "split.csv", groups, split);
    }

    torch::manual_seed(o.seed);
    SegModelConfig mc;
    mc.name = o.model;
    mc.in_channels = pre.channels() * (2 * o.context + 1);
    mc.num_classes = K;
    mc.depth = o.depth;
    mc.base_width = static_cast<int>(std::lround(32.0 * o.width));
    mc.dropout = o.dropout.value_or(0.0);
    std::shared_ptr<SegmenterImpl> model = create_segmenter(mc);
    // Transfer learning, as train_classifier: RUN/init.json says what was taken.
    const nlohmann::json init_info =
        train_detail::start_weights(o, resume, run, *model, [](const std::string& f) { return load_segmenter(f); });

    std::unique_ptr<torch::optim::Optimizer> opt = train_detail::make_optimizer(o, model->parameters());
    const ScheduleOptions so = train_detail::schedule_options(o);
    LrSchedule schedule(so);
    EarlyStopping stopper(o.patience, 1e-6);

    nlohmann::json history = nlohmann::json::array();
    int start_epoch = 0;
    if (resume) {
        start_epoch = state["epoch_done"].get<int>() + 1;
        history = state["history"];
        stopper.restore(state["best_metric"].get<double>(), state["best_epoch"].get<int>(),
                        state["bad_epochs"].get<int>(), start_epoch);
        schedule.restore(state["plateau_lr"].get<double>(), state["plateau_best"].get<double>(),
                         state["plateau_bad"].get<int>());
        LoadedSegmenter last = load_segmenter(run / state["checkpoint"].get<std::string>());
        train_detail::copy_weights(*last.model, *model);
        train_detail::load_optimizer(run / state["optimizer"].get<std::string>(), *opt);
        logger().info("resuming {} after epoch {}", run.string(), start_epoch);
    }

    // ---- batches ----
    const size_t B = static_cast<size_t>(o.batch);
    const size_t batches = std::max<size_t>(1, all.size() / B);
    const size_t n_fg = fg.empty() ? 0 : static_cast<size_t>(std::lround(o.bleed_fraction * static_cast<double>(B)));
    AugmentOptions aug;
    aug.enabled = o.augment;
    const int C = pre.channels() * (2 * o.context + 1), S = o.size;
    auto make_batch = [&](int epoch, size_t b) {
        // The picks and each sample's augmentation come from (seed, epoch, batch, position) only.
        std::mt19937_64 rng(mix_seed(o.seed ^ 0x5E65EEDULL, static_cast<std::uint64_t>(epoch), b));
        std::vector<SlicePick> picks(B);
        for (size_t j = 0; j < B; ++j) picks[j] = j < n_fg ? fg[rng() % fg.size()] : all[rng() % all.size()];
        SegBatch out;
        out.x = torch::empty({static_cast<int64_t>(B), C, S, S}, torch::kFloat32);
        out.y = torch::empty({static_cast<int64_t>(B), S, S}, torch::kInt64);
        float* xd = out.x.data_ptr<float>();
        int64_t* yd = out.y.data_ptr<int64_t>();
        auto fill = [&](size_t j) {
            const Sample& base = cases[picks[j].c].slices[picks[j].k].sample;
            Sample s;
            s.image = o.context > 0 ? seg_detail::context_image(cases[picks[j].c].slices, picks[j].k, o.context)
                                    : base.image.clone();  // a stacked image is already a copy
            s.mask = base.mask.clone();
            if (o.augment) augment(s, aug, mix_seed(o.seed, static_cast<std::uint64_t>(epoch), b * B + j));
            const size_t plane = static_cast<size_t>(S) * S;
            std::vector<cv::Mat> planes;
            for (int k = 0; k < C; ++k) planes.emplace_back(S, S, CV_32FC1, xd + (j * C + k) * plane);
            if (C == 1) {
                s.image.copyTo(planes[0]);
            } else {
                cv::split(s.image, planes.data());
            }
            int64_t* y = yd + j * plane;
            for (int r = 0; r < S; ++r) {
                const uchar* row = s.mask.ptr<uchar>(r);
                for (int c = 0; c < S; ++c) *y++ = row[c];
            }
        };
        const size_t w = static_cast<size_t>(std::clamp(o.workers, 1, static_cast<int>(B)));
        if (w <= 1) {
            for (size_t j = 0; j < B; ++j) fill(j);
        } else {
            std::vector<std::thread> pool;
            for (size_t t = 0; t < w; ++t) {
                pool.emplace_back([&, t] {
                    for (size_t j = t; j < B; j += w) fill(j);
                });
            }
            for (auto& t : pool) t.join();
        }
        return out;
    };

    // "Precise BN" (as the classifier): BatchNorm statistics recomputed with the epoch's final weights
    // on un-augmented training slices, so eval-mode outputs match what the weights were trained for.
    auto recalibrate_batchnorm = [&]() {
        std::vector<torch::nn::BatchNorm2dImpl*> bns;
        for (auto& m : model->modules(false)) {
            if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) bns.push_back(bn);
        }
        if (bns.empty()) return;
        std::vector<c10::optional<double>> momenta;
        for (auto* bn : bns) {
            momenta.push_back(bn->options.momentum());
            bn->options.momentum(c10::nullopt);
            bn->reset_running_stats();
        }
        model->train();
        torch::NoGradGuard ng;
        const size_t step = std::max<size_t>(1, all.size() / (B * 16));  // at most ~16 batches, spread over the set
        std::vector<PreparedSlice> inputs;
        for (size_t i = 0; i < all.size(); i += step) {
            inputs.push_back(model_input(cases[all[i].c], all[i].k, o.context));
            if (inputs.size() == B || i + step >= all.size()) {
                std::vector<const PreparedSlice*> chunk;
                for (const auto& p : inputs) chunk.push_back(&p);
                if (chunk.size() > 1) model->forward(seg_detail::images_tensor(chunk));
                inputs.clear();
            }
        }
        for (size_t i = 0; i < bns.size(); ++i) bns[i]->options.momentum(momenta[i]);
    };

    // Validation on whole cases at their own resolution: Dice per case, averaged.
    struct ValResult {
        double loss = std::nan(""), dice_any = std::nan(""), dice_mean = std::nan("");
        nlohmann::json dice = nlohmann::json::object();
    };
    auto validate_epoch = [&]() {
        ValResult v;
        if (split.val.empty()) return v;
        model->eval();
        torch::NoGradGuard ng;
        std::vector<double> dice_sum(static_cast<size_t>(K), 0.0);
        double any_sum = 0, loss_sum = 0;
        size_t loss_n = 0;
        for (size_t i : split.val) {
            const CaseData& cd = cases[i];
            LabelSlices pred(cd.slices.size());
            for (size_t start = 0; start < cd.slices.size(); start += B) {
                std::vector<PreparedSlice> inputs;
                for (size_t k = start; k < std::min(cd.slices.size(), start + B); ++k) {
                    inputs.push_back(model_input(cd, k, o.context));
                }
                std::vector<const PreparedSlice*> chunk;
                for (const auto& p : inputs) chunk.push_back(&p);
                torch::Tensor logits;
                torch::Tensor probs =
                    seg_detail::forward_probabilities(*model, seg_detail::images_tensor(chunk), o.tta, &logits);
                loss_sum += seg_loss(logits, seg_detail::masks_tensor(chunk), loss_kind).item<double>() *
                            static_cast<double>(chunk.size());
                loss_n += chunk.size();
                for (size_t j = 0; j < chunk.size(); ++j) {
                    pred[start + j] = seg_detail::labels_to_source(
                        seg_detail::probability_planes(probs, static_cast<int64_t>(j)), *chunk[j], pre.resize);
                }
            }
            const auto ov = seg_detail::case_overlap(pred, cd.truth, K, ds.bleed_classes);
            for (int c = 1; c < K; ++c) dice_sum[static_cast<size_t>(c)] += ov.classes[static_cast<size_t>(c)].dice();
            any_sum += ov.any.dice();
        }
        const double n = static_cast<double>(split.val.size());
        double mean = 0;
        for (int c = 1; c < K; ++c) {
            const double d = dice_sum[static_cast<size_t>(c)] / n;
            v.dice[ds.class_names[static_cast<size_t>(c)]] = d;
            mean += d;
        }
        v.dice_mean = mean / (K - 1);
        if (!ds.bleed_classes.empty()) v.dice_any = any_sum / n;
        v.loss = loss_n ? loss_sum / static_cast<double>(loss_n) : std::nan("");
        return v;
    };

    nlohmann::json meta_base = {{"task", "segment"},
                                {"class_names", ds.class_names},
                                {"bleed_classes", ds.bleed_classes},
                                {"channel_names", ds.channel_names},
                                {"preprocess", preprocess_to_json(pre, o.window, o.modality)},
                                {"tta", o.tta ? "hflip" : "none"},
                                {"loss", o.loss},
                                {"context", o.context},
                                {"hemoscan_version", kVersion},
                                {"trained_on", {{"data", o.data}, {"fingerprint", fingerprint}}}};
    if (!init_info.is_null()) meta_base["init"] = init_info;

    int epoch = start_epoch;
    for (; epoch < o.epochs; ++epoch) {
        if (start_epoch > 0 && epoch == start_epoch && stopper.should_stop()) break;
        const auto t0 = std::chrono::steady_clock::now();
        const double lr = schedule.lr(epoch);
        train_detail::set_learning_rate(*opt, lr);
        torch::manual_seed(o.seed * 1000003ULL + static_cast<std::uint64_t>(epoch));
        model->train();
        if (cb.epoch_start) cb.epoch_start(epoch, o.epochs, batches);
        double loss_sum = 0;
        size_t seen = 0;
        std::future<SegBatch> next = std::async(std::launch::async, make_batch, epoch, size_t(0));
        for (size_t b = 0; b < batches; ++b) {
            SegBatch batch = next.get();
            if (b + 1 < batches) next = std::async(std::launch::async, make_batch, epoch, b + 1);
            opt->zero_grad();
            torch::Tensor loss = seg_loss(model->forward(batch.x), batch.y, loss_kind);
            loss.backward();
            if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), o.grad_clip);
            opt->step();
            const double lv = loss.item<double>();
            if (!std::isfinite(lv)) throw Error("training diverged (loss " + std::to_string(lv) + "): lower `lr`");
            loss_sum += lv * static_cast<double>(B);
            seen += B;
            if (cb.batch_end) cb.batch_end(b + 1, loss_sum / static_cast<double>(seen));
        }
        const double train_loss = loss_sum / static_cast<double>(seen);
        const double train_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        recalibrate_batchnorm();
        const ValResult v = validate_epoch();

        const double score = std::isnan(v.dice_any) ? v.dice_mean : 0.5 * (v.dice_any + v.dice_mean);
        // Higher is better; the validation loss breaks ties (Dice saturates on easy data).
        const double monitor =
            !std::isnan(score) ? score - 1e-4 * (std::isnan(v.loss) ? 0.0 : std::min(v.loss, 10.0)) : -train_loss;
        if (so.kind == ScheduleKind::Plateau) schedule.observe(monitor);
        const bool improved = stopper.update(monitor);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        auto num = [](double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); };
        nlohmann::json row = {{"epoch", epoch},
                              {"lr", lr},
                              {"train_loss", train_loss},
                              {"val_loss", num(v.loss)},
                              {"val_dice_any", num(v.dice_any)},
                              {"val_dice_mean", num(v.dice_mean)},
                              {"dice", v.dice},
                              {"seconds", secs},
                              {"best", improved},
                              {"train_slices_per_s", train_secs > 0 ? static_cast<double>(seen) / train_secs : 0.0}};
        history.push_back(row);

        // Checkpoint: weights and optimizer under the epoch's name, then state.json (the commit point).
        const std::string ck = "checkpoint_e" + std::to_string(epoch) + ".pt";
        const std::string op = "optimizer_e" + std::to_string(epoch) + ".pt";
        save_segmenter(run / ck, *model, meta_base);
        train_detail::save_optimizer(run / op, *opt);
        if (improved) save_segmenter(run / "best.pt", *model, meta_base);
        state = train_detail::commit_epoch(run, state_file, state, stopper, schedule,
                                           {{"epoch_done", epoch},
                                            {"checkpoint", ck},
                                            {"optimizer", op},
                                            {"fingerprint", fingerprint},
                                            {"history", history}},
                                           {"checkpoint", "optimizer"});
        write_log_csv(run / "log.csv", history, ds.class_names);
        if (cb.epoch_end) cb.epoch_end(epoch, row);
        if (stopper.should_stop()) {
            logger().info("early stopping after epoch {}: no validation improvement for {} epochs", epoch + 1,
                          o.patience);
            ++epoch;
            break;
        }
    }
    const int epochs_run = epoch;
    cases.clear();  // the evaluation below reads the validation cases again, at their own resolution

    // Final model: the best epoch's weights; metrics.json from evaluating it on the validation cases.
    LoadedSegmenter best = load_segmenter(run / "best.pt");
    nlohmann::json meta = meta_base;
    meta["best_epoch"] = stopper.best_epoch();
    const nlohmann::json& best_row = history.at(static_cast<size_t>(std::max(0, stopper.best_epoch())));
    meta["validation"] = {
        {"dice_any", best_row["val_dice_any"]}, {"dice_mean", best_row["val_dice_mean"]}, {"cases", split.val.size()}};
    save_segmenter(run / "model.pt", *best.model, meta);

    nlohmann::json metrics = nlohmann::json::object();
    if (!split.val.empty()) {
        SegDataset val = ds;
        val.cases.clear();
        for (size_t i : split.val) val.cases.push_back(ds.cases[i]);
        // Post-processing chosen on the validation cases (as nnU-Net does): the smallest foreground
        // component volume kept, whichever candidate gives the best mean Dice per case (a case
        // without a finding counts 1 when nothing is found, so stray specks are paid for).
        const nlohmann::json choice = choose_min_component(run / "model.pt", val, threads);
        meta["postprocess"] = choice;
        save_segmenter(run / "model.pt", *best.model, meta);
        logger().info(
            "post-processing: foreground components below {} mL removed (validation Dice {:.4f}, {:.4f} "
            "without)",
            choice["min_component_ml"].get<double>(), choice["dice"].get<double>(),
            choice["dice_without"].get<double>());
        SegPredictor predictor(run / "model.pt", threads);
        metrics = evaluate_segmentation(predictor, val, run);
    }
    metrics["best_epoch"] = stopper.best_epoch();
    metrics["epochs_run"] = epochs_run;
    metrics["split"] = "holdout " + std::to_string(o.val_fraction);
    write_file_atomic(run / "metrics.json", metrics.dump(2) + "\n");
    write_curves(run / "curves.png", history);

    std::error_code ec;
    fs::remove(run / state.value("checkpoint", std::string("none")), ec);
    fs::remove(run / state.value("optimizer", std::string("none")), ec);
    fs::remove(run / "best.pt", ec);
    state["finished"] = true;
    state["checkpoint"] = "";
    state["optimizer"] = "";
    write_file_atomic(state_file, state.dump() + "\n");

    TrainResult result;
    result.model_path = run / "model.pt";
    result.metrics = metrics;
    result.epochs_run = epochs_run;
    result.best_epoch = stopper.best_epoch();
    result.val_indices = split.val;
    return result;
}

}  // namespace hemoscan

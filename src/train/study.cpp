// Study-level training (train/study.hpp): stage 1 through the classifier trainer and cross-validation,
// stage 2 (the study model) as a task on the shared run skeleton (train/run_loop.hpp).
#include "hemoscan/train/study.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "hemoscan/dist/process_group.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/evaluate/study.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/metrics/classification.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/models/study_model.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/runtime.hpp"
#include "hemoscan/version.hpp"
#include "train/optimizer.hpp"
#include "train/run_loop.hpp"
#include "train/study_detail.hpp"

namespace hemoscan {

namespace fs = std::filesystem;
using train_detail::EpochScore;
using train_detail::EpochStats;
using train_detail::Stage2;
using train_detail::stage2_outputs;
using train_detail::train_stage2;

namespace {

// Studies per stage-2 batch: few studies, each of 20-60 slices; small batches give enough steps.
constexpr int kStudyBatch = 8;

// Stage 2's inputs and targets, one tensor pair per study.
struct StudySet {
    std::vector<torch::Tensor> x, y;
    size_t size() const { return x.size(); }
};

StudySet study_set(const Dataset& ds, const StudyProbs& p) {
    StudySet s;
    for (size_t k = 0; k < p.studies.size(); ++k) {
        s.x.push_back(study_features(p.probs[k]));
        torch::Tensor y = torch::zeros({static_cast<int64_t>(p.studies[k].size()), static_cast<int64_t>(ds.label_names.size())});
        for (size_t t = 0; t < p.studies[k].size(); ++t) {
            const auto& labels = ds.items.at(p.studies[k][t]).labels;
            for (size_t l = 0; l < labels.size(); ++l) y[static_cast<int64_t>(t)][static_cast<int64_t>(l)] = labels[l] > 0.5f ? 1.f : 0.f;
        }
        s.y.push_back(y);
    }
    return s;
}

// Mean BCE over the valid slices plus the mean BCE of the studies (positive when any slice is).
// Unweighted, so that the probabilities stay calibrated (the RSNA metric is a log loss).
torch::Tensor study_loss(const torch::Tensor& slice_logits, const torch::Tensor& study_logits, const StudyBatch& b) {
    namespace F = torch::nn::functional;
    const torch::Tensor per = F::binary_cross_entropy_with_logits(
        slice_logits, b.y, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
    const torch::Tensor m = b.mask.unsqueeze(2).expand_as(per);
    const torch::Tensor slice_term = (per * m).sum() / m.sum().clamp_min(1);
    const torch::Tensor study_target = std::get<0>((b.y * b.mask.unsqueeze(2)).max(1));
    return 0.5 * (slice_term + F::binary_cross_entropy_with_logits(study_logits, study_target));
}

// The study model's probabilities of every slice and study of `p` (eval mode, no gradients), into a
// copy of `p`; also the mean loss when the targets are given.
StudyProbs scored(StudyModelImpl& model, const StudyProbs& p, const StudySet* targets, double* loss) {
    model.eval();
    torch::NoGradGuard ng;
    StudyProbs out = p;
    out.study_probs.assign(p.studies.size(), {});
    double loss_sum = 0;
    for (size_t start = 0; start < p.studies.size(); start += 64) {
        const size_t end = std::min(p.studies.size(), start + 64);
        std::vector<torch::Tensor> xs, ys;
        for (size_t k = start; k < end; ++k) {
            xs.push_back(study_features(p.probs[k]));
            if (targets) ys.push_back(targets->y[k]);
        }
        const StudyBatch b = pad_studies(xs, ys);
        auto [slice_logits, study_logits] = model.forward(b.x, b.mask);
        if (targets) loss_sum += study_loss(slice_logits, study_logits, b).item<double>() * double(end - start);
        const torch::Tensor sp = torch::sigmoid(slice_logits).contiguous(), tp = torch::sigmoid(study_logits).contiguous();
        const auto sa = sp.accessor<float, 3>();
        const auto ta = tp.accessor<float, 2>();
        for (size_t k = start; k < end; ++k) {
            const auto i = static_cast<int64_t>(k - start);
            for (size_t t = 0; t < p.studies[k].size(); ++t) {
                for (size_t l = 0; l < out.probs[k][t].size(); ++l) out.probs[k][t][l] = sa[i][int64_t(t)][int64_t(l)];
            }
            for (int64_t l = 0; l < tp.size(1); ++l) out.study_probs[k].push_back(ta[i][l]);
        }
    }
    if (loss) *loss = p.studies.empty() ? std::nan("") : loss_sum / static_cast<double>(p.studies.size());
    return out;
}

double macro_auc_of(const PredictionTable& t, nlohmann::json* per_label = nullptr) {
    double sum = 0;
    int n = 0;
    for (size_t l = 0; l < t.label_names.size(); ++l) {
        std::vector<double> s;
        std::vector<int> y;
        for (size_t r = 0; r < t.size(); ++r) {
            s.push_back(t.probs[r][l]);
            y.push_back(t.truths[r][l]);
        }
        const long pos = std::count(y.begin(), y.end(), 1);
        if (pos == 0 || pos == static_cast<long>(y.size())) {
            if (per_label) (*per_label)[t.label_names[l]] = nullptr;
            continue;
        }
        const double auc = roc_auc(s, y);
        if (per_label) (*per_label)[t.label_names[l]] = auc;
        sum += auc;
        ++n;
    }
    return n ? sum / n : std::nan("");
}

// Per label the share of positive rows (0.5 where a label has one class).
std::vector<double> prevalence(const PredictionTable& t) {
    std::vector<double> p(t.label_names.size(), 0.5);
    for (size_t l = 0; l < p.size(); ++l) {
        double pos = 0;
        for (const auto& row : t.truths) pos += row[l];
        if (pos > 0 && pos < static_cast<double>(t.size())) p[l] = pos / static_cast<double>(t.size());
    }
    return p;
}

class StudyTraining final : public train_detail::TrainingTask {
public:
    StudyTraining(const TrainOptions& o, const Dataset& ds, const StudyProbs& train, const StudyProbs& val,
                  StudyModelImpl& model, torch::optim::Optimizer& opt)
        : o_(o), ds_(ds), train_p_(train), val_p_(val), train_(study_set(ds, train)), val_(study_set(ds, val)),
          model_(model), opt_(opt) {}

    size_t batches_per_epoch() const override { return (train_.size() + kStudyBatch - 1) / kStudyBatch; }

    EpochStats train_epoch(int, const TrainCallbacks& cb) override {
        const torch::Tensor order = torch::randperm(static_cast<int64_t>(train_.size()), torch::kLong);
        double loss_sum = 0;
        size_t seen = 0, batch_no = 0;
        for (size_t start = 0; start < train_.size(); start += kStudyBatch) {
            std::vector<torch::Tensor> xs, ys;
            for (size_t k = start; k < std::min(train_.size(), start + kStudyBatch); ++k) {
                const auto i = static_cast<size_t>(order[static_cast<int64_t>(k)].item<int64_t>());
                xs.push_back(train_.x[i]);
                ys.push_back(train_.y[i]);
            }
            const StudyBatch b = pad_studies(xs, ys);
            opt_.zero_grad();
            auto [slice_logits, study_logits] = model_.forward(b.x, b.mask);
            torch::Tensor l = study_loss(slice_logits, study_logits, b);
            l.backward();
            if (o_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model_.parameters(), o_.grad_clip);
            opt_.step();
            const double lv = l.item<double>();
            if (!std::isfinite(lv)) throw Error("study model training diverged (loss " + std::to_string(lv) + "): lower `study_lr`");
            loss_sum += lv * static_cast<double>(xs.size());
            seen += xs.size();
            if (cb.batch_end) cb.batch_end(++batch_no, loss_sum / static_cast<double>(seen));
        }
        return {seen ? loss_sum / static_cast<double>(seen) : std::nan(""), seen};
    }

    // The best epoch is the one of the lowest validation loss: with few validation studies the AUCs
    // saturate or jump, the loss moves smoothly. Without validation the last epoch is kept.
    EpochScore validate(int epoch, const EpochStats&) override {
        nlohmann::json aucs = nlohmann::json::object();
        if (val_.size() == 0) {
            return {static_cast<double>(epoch),
                    {{"val_loss", nullptr}, {"val_auc", nullptr}, {"val_study_auc", nullptr}, {"auc", aucs}}};
        }
        double val_loss = 0;
        const StudyProbs out = scored(model_, val_p_, &val_, &val_loss);
        const StudyTables t = study_tables(ds_, out);
        const double slice_auc = macro_auc_of(t.slices), study_auc = macro_auc_of(t.studies, &aucs);
        return {-val_loss,
                {{"val_loss", train_detail::json_number(val_loss)},
                 {"val_auc", train_detail::json_number(slice_auc)},
                 {"val_study_auc", train_detail::json_number(study_auc)},
                 {"auc", aucs}}};
    }

    void save(const fs::path& file) override {
        torch::serialize::OutputArchive a;
        model_.save(a);
        write_atomic_with(file, [&](const fs::path& tmp) { a.save_to(tmp.string()); });
    }
    void load(const fs::path& file) override {
        torch::serialize::InputArchive a;
        a.load_from(file.string());
        model_.load(a);
    }

private:
    const TrainOptions& o_;
    const Dataset& ds_;
    const StudyProbs &train_p_, &val_p_;
    StudySet train_, val_;
    StudyModelImpl& model_;
    torch::optim::Optimizer& opt_;
};

// The data of a study task: ordered slices with multi-label labels.
Dataset open_study_data(const TrainOptions& o) {
    DatasetOptions dopt;
    dopt.labels = o.labels;
    Dataset ds = open_dataset(o.data, dopt);
    if (!ds.ordered) {
        throw InputError(o.data + ": `task` study needs slices in study order: a manifest with a \"slice\" column "
                         "(and \"study\" or \"patient\"), or the RSNA layout");
    }
    if (ds.multiclass) throw InputError(o.data + ": `task` study needs label columns (sigmoid per label), not class folders");
    return ds;
}

void write_config(const fs::path& out, const char* command, const TrainOptions& o, const Dataset& ds) {
    fs::create_directories(out);
    write_file_atomic(out / "config.json", nlohmann::json({{"hemoscan_version", kVersion},
                                                            {"command", command},
                                                            {"task", "study"},
                                                            {"options", train_options_to_json(o)},
                                                            {"data_fingerprint", ds.fingerprint()},
                                                            {"labels", ds.label_names},
                                                            {"studies", ds.studies().size()},
                                                            {"runtime", runtime_json()}})
                                                   .dump(2) + "\n");
}

// Stage-1 options: the slice classifier the study options describe.
TrainOptions stage1_options(const TrainOptions& o, const fs::path& out, int folds, bool writer = true) {
    TrainOptions o1 = o;
    o1.task = "classify";
    o1.out = out.string();
    o1.folds = folds;
    o1.fold = 0;
    // A rerun after an interruption reuses the finished folds; the pooled figures are derived again.
    std::error_code ec;
    if (writer) fs::remove(out / "metrics.json", ec);
    return o1;
}

// What a rank other than 0 returns when its share of a study run is done: the file rank 0 will write.
TrainResult rank_done(const fs::path& run) {
    TrainResult r;
    r.model_path = run / "model.pt";
    r.metrics = nlohmann::json::object();
    logger().info("stage 1 done on this rank; rank 0 trains the study model");
    return r;
}

// The study file: the slice model with its thresholds moved under "study", the study model's thresholds
// as the file's own.
void save_study_file(const fs::path& file, const fs::path& stage1_file, const Stage2& s2, const nlohmann::json& info) {
    LoadedModel slice = load_model(stage1_file);
    nlohmann::json meta = slice.meta;
    nlohmann::json study = meta.contains("study") ? meta["study"] : nlohmann::json::object();
    if (!meta.contains("study")) {
        study["slice_thresholds"] = meta.contains("thresholds") ? meta["thresholds"]
                                    : nlohmann::json(std::vector<double>(s2.thresholds.size(), 0.5));
    }
    study["features"] = "stage-1 log-odds / 4";
    study["best_epoch"] = s2.best_epoch;
    study.update(info);
    meta["study"] = study;
    meta["thresholds"] = s2.thresholds;
    meta["study"]["study_thresholds"] = s2.study_thresholds;
    save_study_model(file, *slice.model, meta, *s2.model);
}

}  // namespace

namespace train_detail {

StudyProbs stage2_outputs(StudyModelImpl& model, const StudyProbs& p) { return scored(model, p, nullptr, nullptr); }

Stage2 train_stage2(const TrainOptions& o, const Dataset& ds, const StudyProbs& train, const StudyProbs& val,
                    const fs::path& dir, const TrainCallbacks& cb) {
    if (train.studies.empty()) throw InputError(o.data + ": no training studies for the study model");
    std::error_code ec;
    fs::remove_all(dir, ec);  // stage 2 is cheap and derived: an unfinished one starts again
    TrainOptions o2 = o;
    o2.out = dir.string();
    o2.epochs = o.study_epochs;
    o2.lr = o.study_lr;
    o2.batch = kStudyBatch;
    o2.patience = 0;
    o2.schedule = "cosine";
    train_detail::RunFolder folder(o2, false, ds.fingerprint());
    folder.start(o2, {{"stage", 2}, {"train_studies", train.studies.size()}, {"val_studies", val.studies.size()}},
                 [&](const fs::path& file) {
                     Split split;
                     for (const auto& s : train.studies) split.train.insert(split.train.end(), s.begin(), s.end());
                     for (const auto& s : val.studies) split.val.insert(split.val.end(), s.begin(), s.end());
                     write_split_csv(file, ds, split);
                 });
    torch::manual_seed(o.seed);
    StudyModelConfig mc;
    mc.in_features = mc.num_labels = static_cast<int>(ds.label_names.size());
    mc.hidden = o.study_hidden;
    auto model = std::make_shared<StudyModelImpl>(mc);
    std::unique_ptr<torch::optim::Optimizer> opt = train_detail::make_optimizer(o2, model->parameters());
    StudyTraining task(o2, ds, train, val, *model, *opt);
    train_detail::EpochLoop loop(folder, o2, *model, *opt,
                                 {{"lr", "train_loss", "val_loss", "val_auc", "val_study_auc"},
                                  "train_studies_per_s", "auc", "study_auc_", ds.label_names},
                                 {"Validation AUC", "AUC", {{"slice AUC", "val_auc"}, {"study AUC", "val_study_auc"}}});
    Stage2 r;
    r.epochs_run = loop.run(task, cb);
    task.load(dir / "best.pt");
    r.best_epoch = loop.best_epoch();
    loop.finish(task);
    model->eval();
    r.model = model;
    // Thresholds on the validation slices and studies (Youden's J), kept at the training prevalence (the
    // loss's balanced point: it is unweighted) where validation cannot tell. A study is decided apart
    // from its slices: its probability is its highest slice's, which needs a higher threshold.
    StudyProbs train_p = train;
    train_p.study_probs = max_over_slices(train.probs);
    const StudyTables tt = study_tables(ds, train_p);
    r.thresholds = prevalence(tt.slices);
    r.study_thresholds = prevalence(tt.studies);
    if (!val.studies.empty()) {
        const StudyTables tv = study_tables(ds, stage2_outputs(*model, val));
        r.thresholds = choose_thresholds(tv.slices, r.thresholds);
        r.study_thresholds = choose_thresholds(tv.studies, r.study_thresholds);
    }
    logger().info("study model: best epoch {} of {}", r.best_epoch + 1, r.epochs_run);
    return r;
}

}  // namespace train_detail

TrainResult train_study(const TrainOptions& options, const CvCallbacks& cb) {
    TrainOptions o = options;
    o.task = "study";
    validate_train_options(o);
    if (o.out.empty()) throw UsageError("`out` RUN is required");
    train_detail::use_threads(o);
    const Dataset ds = open_study_data(o);
    const fs::path run(o.out);
    if (fs::exists(run / "model.pt")) throw UsageError(run.string() + " already holds a run: use another `out`");
    const Split split = o.val_fraction > 0 ? holdout_split(ds, o.val_fraction, o.seed) : [&] {
        Split s;
        for (size_t i = 0; i < ds.size(); ++i) s.train.push_back(i);
        return s;
    }();
    // Distributed: stage 1 (the slice models, nearly all of the work) trains as the group; the study model
    // is small and rank 0 alone trains it and writes the run, while the other ranks are done.
    const std::shared_ptr<ProcessGroup> group = join_process_group(o.dist, o.dist_timeout_s);
    const bool writer = o.dist.rank == 0;
    if (writer) {
        write_config(run, "train", o, ds);
        write_split_csv(run / "split.csv", ds, split);
    }

    StudyProbs train_p, val_p;
    fs::path stage1_file = o.stage1;
    nlohmann::json info = {{"stage1", o.stage1.empty() ? "trained" : o.stage1}};
    if (!o.stage1.empty()) {
        if (!writer) return rank_done(run);  // nothing to train as a group
        Predictor p(o.stage1, o.threads);
        if (p.labels() != ds.label_names) throw InputError(o.stage1 + ": its labels are not the data's (select them with `labels`)");
        const auto& trained = p.meta().contains("trained_on") ? p.meta()["trained_on"] : nlohmann::json::object();
        if (trained.value("fingerprint", std::string()) == ds.fingerprint()) {
            logger().warn("{} was trained on this data: its outputs on the training studies are in-sample, and the "
                          "study model learns their overconfidence", o.stage1);
        }
        train_p = predict_study_slices(p, ds, split.train);
        val_p = predict_study_slices(p, ds, split.val);
    } else {
        logger().info("stage 1: {}-fold out-of-fold outputs of the {} training slices", o.stage1_folds, split.train.size());
        const TrainOptions oof_options = stage1_options(o, run / "stage1_oof", o.stage1_folds, writer);
        if (group) group->barrier();  // rank 0 has cleared an interrupted attempt's pooled figures
        const CvResult oof = cross_validate_items(oof_options, split.train, cb, group.get());
        train_p = group_studies(ds, oof.items, oof.probs);
        stage1_file = run / "stage1" / "model.pt";
        if (group) group->barrier();  // every rank has looked for rank 0's stage-1 model before it may appear
        if (!fs::exists(stage1_file)) {
            logger().info("stage 1: the slice model on all training slices");
            const TrainOptions o1 = stage1_options(o, run / "stage1", 0, writer);
            std::error_code ec;
            if (writer) fs::remove_all(run / "stage1", ec);
            train_classifier(o1, cb.train, false, &split, group.get());
        }
        if (!writer) return rank_done(run);
        Predictor p(stage1_file, o.threads);
        val_p = predict_study_slices(p, ds, split.val);
    }
    logger().info("stage 2: the study model on {} training studies ({} for validation)", train_p.studies.size(),
                  val_p.studies.size());
    const Stage2 s2 = train_stage2(o, ds, train_p, val_p, run / "stage2", cb.train);
    save_study_file(run / "model.pt", stage1_file, s2, info);

    TrainResult result;
    result.model_path = run / "model.pt";
    result.best_epoch = s2.best_epoch;
    result.epochs_run = s2.epochs_run;
    result.metrics = nlohmann::json::object();
    if (!val_p.studies.empty()) {
        Predictor final_model(result.model_path, o.threads);
        result.metrics = evaluate_study_probs(final_model, ds, val_p, run);
    }
    result.metrics["best_epoch"] = s2.best_epoch;
    result.metrics["split"] = split.val.empty() ? std::string("none (all items trained)")
                                                : "holdout " + std::to_string(o.val_fraction);
    write_file_atomic(run / "metrics.json", result.metrics.dump(2) + "\n");
    return result;
}

namespace {

// Stage 2 of one cross-validation fold: trained on the other folds' studies (an inner patient-grouped
// holdout chooses its epoch and thresholds), applied to the fold's own.
Stage2 fold_stage2(const TrainOptions& o, const Dataset& ds, const StudyProbs& oof, const std::vector<int>& study_fold,
                  int k, const fs::path& dir, StudyProbs& test, const TrainCallbacks& cb) {
    Dataset sub = ds;
    sub.items.clear();
    std::vector<size_t> study_of_sub;
    for (size_t s = 0; s < oof.studies.size(); ++s) {
        if (study_fold[s] == k) continue;
        for (size_t i : oof.studies[s]) {
            sub.items.push_back(ds.items[i]);
            study_of_sub.push_back(s);
        }
    }
    std::vector<bool> in_val(oof.studies.size(), false);
    if (o.val_fraction > 0) {
        for (size_t r : holdout_split(sub, o.val_fraction, o.seed + static_cast<std::uint64_t>(k)).val) in_val[study_of_sub[r]] = true;
    }
    StudyProbs train, val;
    test = StudyProbs{};
    for (size_t s = 0; s < oof.studies.size(); ++s) {
        StudyProbs& to = study_fold[s] == k ? test : in_val[s] ? val : train;
        to.studies.push_back(oof.studies[s]);
        to.probs.push_back(oof.probs[s]);
    }
    Stage2 s2 = train_stage2(o, ds, train, val, dir, cb);
    test = stage2_outputs(*s2.model, test);
    test.folds.assign(test.studies.size(), k);
    return s2;
}

// Pools two-level figures where every row was decided by its own fold's thresholds (slices by
// `slice_th`, studies by `study_th`); `t` gets the decisions.
nlohmann::json pooled_two_level(const Dataset& ds, StudyTables& t, const std::vector<std::vector<double>>& slice_th,
                                const std::vector<std::vector<double>>& study_th, std::uint64_t seed) {
    const std::vector<double> placeholder(ds.label_names.size(), 0.5);
    nlohmann::json m = two_level_metrics(t, placeholder, seed);
    decide_by_fold(t.slices, slice_th);
    decide_by_fold(t.studies, study_th);
    apply_case_decisions(m["slice"], t.slices);
    apply_case_decisions(m["study"], t.studies);
    for (size_t l = 0; l < ds.label_names.size(); ++l) {
        std::vector<double> fs, fst;
        for (const auto& f : slice_th) fs.push_back(f[l]);
        for (const auto& f : study_th) fst.push_back(f[l]);
        m["slice"]["labels"][ds.label_names[l]]["threshold"] = fs;
        m["study"]["labels"][ds.label_names[l]]["threshold"] = fst;
    }
    return m;
}

}  // namespace

nlohmann::json cross_validate_study(const TrainOptions& options, const CvCallbacks& cb) {
    TrainOptions o = options;
    o.task = "study";
    const int K = o.folds;
    if (K < 2) throw UsageError("`folds` must be >= 2 for cross-validation");
    o.fold = 0;
    validate_train_options(o);
    const fs::path out(o.out);
    if (fs::exists(out / "metrics.json")) throw UsageError(out.string() + " already holds a cross-validation: use another `out`");
    train_detail::use_threads(o);
    const Dataset ds = open_study_data(o);
    // Distributed: every stage-1 fold trains as the group; rank 0 alone trains the small study models.
    const std::shared_ptr<ProcessGroup> group = join_process_group(o.dist, o.dist_timeout_s);
    const bool writer = o.dist.rank == 0;
    if (writer) write_config(out, "cv", o, ds);

    const TrainOptions s1_options = stage1_options(o, out / "stage1", K, writer);
    if (group) group->barrier();  // rank 0 has cleared an interrupted attempt's pooled figures
    const CvResult s1 = cross_validate_items(s1_options, {}, cb, group.get());
    if (!writer) return nlohmann::json::object();
    StudyProbs oof = group_studies(ds, s1.items, s1.probs);
    std::vector<int> fold_of_item(ds.size(), -1);
    for (size_t r = 0; r < s1.items.size(); ++r) fold_of_item[s1.items[r]] = s1.folds[r];
    std::vector<int> study_fold;
    for (const auto& s : oof.studies) study_fold.push_back(fold_of_item[s.front()]);  // folds keep patients whole

    StudyProbs pooled;
    std::vector<std::vector<double>> th2, th2_study, th1;
    nlohmann::json per_fold = nlohmann::json::array();
    for (int k = 0; k < K; ++k) {
        logger().info("stage 2, fold {}/{}", k + 1, K);
        StudyProbs test;
        const Stage2 s2 = fold_stage2(o, ds, oof, study_fold, k, out / "stage2" / ("fold_" + std::to_string(k)), test, cb.train);
        th2.push_back(s2.thresholds);
        th2_study.push_back(s2.study_thresholds);
        // Only the fold's thresholds are needed: its meta, not a model loaded for inference.
        th1.push_back(read_model_meta(out / "stage1" / ("fold_" + std::to_string(k)) / "model.pt")
                          .at("thresholds")
                          .get<std::vector<double>>());
        const nlohmann::json fm = two_level_metrics(study_tables(ds, test), s2.thresholds, o.seed, s2.study_thresholds);
        per_fold.push_back({{"fold", k},
                            {"studies", test.studies.size()},
                            {"slice_macro_auc", fm["slice"]["macro_auc"]},
                            {"study_macro_auc", fm["study"]["macro_auc"]},
                            {"rsna_log_loss", fm["rsna_log_loss"]},
                            {"best_epoch", s2.best_epoch}});
        for (size_t s = 0; s < test.studies.size(); ++s) {
            pooled.studies.push_back(test.studies[s]);
            pooled.probs.push_back(test.probs[s]);
            pooled.study_probs.push_back(test.study_probs[s]);
            pooled.folds.push_back(k);
        }
    }
    StudyTables t = study_tables(ds, pooled);
    nlohmann::json metrics = pooled_two_level(ds, t, th2, th2_study, o.seed);
    StudyProbs stage1 = oof;
    stage1.study_probs = max_over_slices(stage1.probs);
    stage1.folds = study_fold;
    StudyTables t1 = study_tables(ds, stage1);
    metrics["stage1"] = pooled_two_level(ds, t1, th1, th1, o.seed);
    metrics["folds"] = per_fold;
    metrics["k"] = K;
    metrics["pooled"] = "out-of-fold outputs of all folds; each case decided by its own fold's thresholds";

    const std::vector<double> placeholder(ds.label_names.size(), 0.5);  // the rows carry their decisions
    write_two_level_outputs(out, t, placeholder, placeholder);
    write_file_atomic(out / "metrics.json", metrics.dump(2) + "\n");
    return metrics;
}

}  // namespace hemoscan

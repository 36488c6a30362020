#include "hemoscan/train/cv.hpp"

#include <cmath>

#include "hemoscan/dist/process_group.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/metrics/classification.hpp"
#include "hemoscan/evaluate/classification.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/runtime.hpp"
#include "hemoscan/version.hpp"

namespace hemoscan {

namespace {

std::pair<double, double> mean_sd(const std::vector<double>& v) {
    if (v.empty()) return {std::nan(""), std::nan("")};
    double m = 0;
    for (double x : v) m += x;
    m /= static_cast<double>(v.size());
    double ss = 0;
    for (double x : v) ss += (x - m) * (x - m);
    return {m, v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0};
}

}  // namespace

nlohmann::json cross_validate(const TrainOptions& options, const CvCallbacks& cb) {
    return cross_validate_items(options, {}, cb).metrics;
}

CvResult cross_validate_items(const TrainOptions& options, const std::vector<size_t>& items_in, const CvCallbacks& cb,
                              ProcessGroup* given_group) {
    const int K = options.folds;
    if (K < 2) throw UsageError("`folds` must be >= 2 for cross-validation");
    validate_train_options(options);  // before any file of the run is written
    const fs::path out(options.out);
    if (fs::exists(out / "metrics.json")) throw UsageError(out.string() + " already holds a cross-validation: use another `out`");

    Dataset ds = open_dataset(options.data, dataset_options_of(options));
    std::vector<size_t> items = items_in;
    if (items.empty()) {
        for (size_t i = 0; i < ds.size(); ++i) items.push_back(i);
    }
    Dataset part = ds;  // the items cross-validated; folds over them
    part.items.clear();
    for (size_t i : items) part.items.push_back(ds.items.at(i));
    const auto folds = grouped_stratified_folds(part, K, options.seed);
    // Distributed: every fold trains as the whole group (data-parallel, one group for all folds); rank 0
    // alone writes, and the others wait for its model file before predicting the held-out fold.
    const std::shared_ptr<ProcessGroup> own_group =
        given_group ? nullptr : join_process_group(options.dist, options.dist_timeout_s);
    ProcessGroup* group = given_group ? given_group : own_group.get();
    const bool writer = options.dist.rank == 0;
    fs::create_directories(out);
    if (writer) write_split_csv(out / "split.csv", part, folds);
    if (writer) write_file_atomic(out / "config.json", nlohmann::json({{"hemoscan_version", kVersion},
                                                            {"command", "cv"},
                                                            {"options", train_options_to_json(options)},
                                                            {"data_fingerprint", ds.fingerprint()},
                                                            {"labels", ds.label_names},
                                                            {"runtime", runtime_json()}})
                                                   .dump(2) + "\n");

    CvResult result;
    PredictionTable pooled;
    pooled.label_names = ds.label_names;
    pooled.multiclass = ds.multiclass;
    std::vector<std::vector<int>> decisions;
    std::vector<std::vector<double>> thresholds_by_fold;
    nlohmann::json per_fold = nlohmann::json::array();
    std::map<std::string, std::vector<double>> fold_values;

    for (int k = 0; k < K; ++k) {
        if (cb.fold_start) cb.fold_start(k, K);
        Split outer;
        for (size_t r = 0; r < items.size(); ++r) (folds[r] == k ? outer.val : outer.train).push_back(items[r]);
        // Inner grouped holdout inside the training folds: early stopping and the threshold never see
        // the fold being tested.
        Dataset sub = ds;
        sub.items.clear();
        for (size_t i : outer.train) sub.items.push_back(ds.items[i]);
        // --val-fraction 0: no inner part; each fold trains on all of its training folds, keeps the
        // last epoch and decides at the loss's balanced point.
        Split inner_local;
        if (options.val_fraction > 0) {
            inner_local = holdout_split(sub, options.val_fraction, options.seed + static_cast<std::uint64_t>(k));
        } else {
            for (size_t i = 0; i < sub.items.size(); ++i) inner_local.train.push_back(i);
        }
        Split inner;
        for (size_t i : inner_local.train) inner.train.push_back(outer.train[i]);
        for (size_t i : inner_local.val) inner.val.push_back(outer.train[i]);

        TrainOptions fo = options;
        fo.out = (out / ("fold_" + std::to_string(k))).string();
        fo.fold = k;
        bool resume = fs::exists(fs::path(fo.out) / "state.json");
        if (resume && fs::exists(fs::path(fo.out) / "model.pt")) {
            logger().info("fold {}: already trained, reusing {}", k, fo.out);
        } else {
            train_classifier(fo, cb.train, resume, &inner, group);
        }
        if (group) group->barrier();  // rank 0's model.pt of the fold is written

        Predictor predictor(fs::path(fo.out) / "model.pt", options.threads);
        EvaluateOptions eo;
        eo.workers = options.workers;
        eo.group = group;  // the held-out fold predicted by the group: each rank a block, every rank the whole
        PredictionTable fold_table = predict_items(predictor, ds, outer.val, eo);
        auto th = predictor.thresholds();
        thresholds_by_fold.push_back(th);
        nlohmann::json fm = compute_metrics(fold_table, th, options.seed);
        fm["fold"] = k;
        fm["thresholds"] = th;
        per_fold.push_back(fm);
        if (writer) write_file_atomic(fs::path(fo.out) / "test_metrics.json", fm.dump(2) + "\n");
        for (const auto& [name, lj] : fm["labels"].items()) {
            for (const char* key : {"auc", "accuracy", "sensitivity", "specificity"}) {
                if (!lj[key].is_null()) fold_values[name + "/" + key].push_back(lj[key].get<double>());
            }
        }
        if (fm.contains("accuracy") && !fm["accuracy"].is_null()) fold_values["accuracy"].push_back(fm["accuracy"]);
        for (size_t r = 0; r < fold_table.size(); ++r) {
            result.items.push_back(outer.val[r]);
            result.probs.push_back(fold_table.probs[r]);
            result.folds.push_back(k);
            pooled.add(ds.items[outer.val[r]], fold_table.probs[r], k);
            decisions.push_back(predictor.decide(fold_table.probs[r]));
        }
    }

    // Pooled out-of-fold metrics.
    std::vector<double> placeholder(ds.label_names.size(), 0.5);
    nlohmann::json metrics = compute_metrics(pooled, placeholder, options.seed);
    if (!pooled.multiclass) {
        // Each case decided by its own fold's thresholds, each chosen on that fold's inner validation.
        pooled.decisions = decisions;
        apply_case_decisions(metrics, pooled);
        for (size_t l = 0; l < ds.label_names.size(); ++l) {
            std::vector<double> ft;
            for (const auto& th : thresholds_by_fold) ft.push_back(th[l]);
            metrics["labels"][ds.label_names[l]]["threshold"] = ft;
        }
    }
    nlohmann::json summary = nlohmann::json::object();
    for (const auto& [key, values] : fold_values) {
        auto [m, sd] = mean_sd(values);
        summary[key] = {{"mean", m}, {"sd", sd}, {"values", values}};
    }
    metrics["folds"] = per_fold;
    metrics["summary"] = summary;
    metrics["k"] = K;
    metrics["pooled"] = "out-of-fold predictions of all folds; each case decided by its own fold's threshold";

    // predictions.csv and the confusion plot use each case's own fold decision.
    if (!pooled.multiclass) pooled.decisions = decisions;
    if (writer) {
        write_predictions_csv(out / "predictions.csv", pooled, placeholder);
        write_metric_plots(out, pooled, placeholder);
        write_file_atomic(out / "metrics.json", metrics.dump(2) + "\n");
    }
    result.metrics = std::move(metrics);
    return result;
}

}  // namespace hemoscan

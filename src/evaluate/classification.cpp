#include "hemoscan/evaluate/classification.hpp"

#include "hemoscan/dist/process_group.hpp"
#include "hemoscan/evaluate/study.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/data/loader.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/metrics/classification.hpp"
#include "hemoscan/report/plot.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/util/fs.hpp"

namespace hemoscan {

void PredictionTable::add(const DatasetItem& item, const std::vector<double>& p, int fold) {
    paths.push_back(item.path.string());
    patients.push_back(item.patient);
    probs.push_back(p);
    std::vector<int> t;
    for (float v : item.labels) t.push_back(v > 0.5f ? 1 : 0);
    truths.push_back(std::move(t));
    if (fold >= 0) folds.push_back(fold);
}

namespace {

std::vector<double> column(const std::vector<std::vector<double>>& m, size_t l) {
    std::vector<double> c;
    c.reserve(m.size());
    for (const auto& r : m) c.push_back(r[l]);
    return c;
}
std::vector<int> column(const std::vector<std::vector<int>>& m, size_t l) {
    std::vector<int> c;
    c.reserve(m.size());
    for (const auto& r : m) c.push_back(r[l]);
    return c;
}
bool both_classes(const std::vector<int>& t) {
    long pos = std::count(t.begin(), t.end(), 1);
    return pos > 0 && pos < static_cast<long>(t.size());
}

}  // namespace

std::vector<double> choose_thresholds(const PredictionTable& table, const std::vector<double>& priors) {
    std::vector<double> th(table.label_names.size(), 0.5);
    if (table.multiclass) return th;  // argmax decides
    if (!priors.empty() && priors.size() != th.size()) {
        throw UsageError("choose_thresholds: " + std::to_string(priors.size()) + " priors for " +
                         std::to_string(th.size()) + " labels");
    }
    for (size_t l = 0; l < th.size(); ++l) {
        auto t = column(table.truths, l);
        if (!both_classes(t)) continue;
        th[l] = youden_margin_threshold(column(table.probs, l), t,
                                        priors.empty() ? std::nullopt : std::optional<double>(priors[l]));
    }
    return th;
}

nlohmann::json compute_metrics(const PredictionTable& table, const std::vector<double>& thresholds, std::uint64_t seed) {
    nlohmann::json j;
    j["n"] = table.size();
    j["patients"] = std::set<std::string>(table.patients.begin(), table.patients.end()).size();
    nlohmann::json labels = nlohmann::json::object();
    double auc_sum = 0;
    int auc_n = 0;
    for (size_t l = 0; l < table.label_names.size(); ++l) {
        auto s = column(table.probs, l);
        auto t = column(table.truths, l);
        LabelReportOptions ro;
        ro.threshold = thresholds[l];
        ro.bootstrap.seed = seed;
        ro.groups = table.patients;
        auto lj = label_metrics_json(s, t, ro);
        if (!lj["auc"].is_null()) {
            auc_sum += lj["auc"].get<double>();
            ++auc_n;
        }
        labels[table.label_names[l]] = lj;
    }
    j["labels"] = labels;
    j["macro_auc"] = auc_n ? nlohmann::json(auc_sum / auc_n) : nlohmann::json(nullptr);
    if (!table.multiclass && has_rsna_any_label(table.label_names) && table.size() > 0) {
        j["rsna_weighted_log_loss"] = rsna_weighted_log_loss(table.probs, table.truths, table.label_names);
    }
    if (table.multiclass && table.size() > 0) {
        std::vector<int> truth_idx;
        for (const auto& t : table.truths) truth_idx.push_back(static_cast<int>(std::max_element(t.begin(), t.end()) - t.begin()));
        BootstrapOptions bo;
        bo.seed = seed;
        const MultiClassIntervals ci = bootstrap_multiclass_ci(table.probs, truth_idx, bo, table.patients);
        j["multiclass"] = multiclass_json(multiclass_metrics(table.probs, truth_idx), table.label_names, &ci);
        j["accuracy"] = j["multiclass"]["accuracy"];
    }
    return j;
}

void apply_case_decisions(nlohmann::json& metrics, const PredictionTable& table) {
    if (table.multiclass || table.decisions.empty()) return;
    for (size_t l = 0; l < table.label_names.size(); ++l) {
        nlohmann::json& lj = metrics["labels"][table.label_names[l]];
        const Confusion c = confusion_of(column(table.truths, l), column(table.decisions, l));
        lj["accuracy"] = c.accuracy();
        lj["sensitivity"] = c.sensitivity();
        lj["specificity"] = c.specificity();
        lj["precision"] = c.precision();
        lj["f1"] = c.f1();
        lj["confusion"] = {{c.tn, c.fp}, {c.fn, c.tp}};
    }
}

void write_predictions_csv(const fs::path& file, const PredictionTable& table, const std::vector<double>& thresholds) {
    std::ostringstream ss;
    ss << "path,patient";
    if (!table.folds.empty()) ss << ",fold";
    for (const auto& l : table.label_names) ss << ',' << csv_escape(l + "_true") << ',' << csv_escape(l + "_prob") << ',' << csv_escape(l + "_pred");
    ss << "\n";
    ss.precision(6);
    for (size_t i = 0; i < table.size(); ++i) {
        ss << csv_escape(table.paths[i]) << ',' << csv_escape(table.patients[i]);
        if (!table.folds.empty()) ss << ',' << table.folds[i];
        size_t argmax = 0;
        for (size_t l = 1; l < table.label_names.size(); ++l) if (table.probs[i][l] > table.probs[i][argmax]) argmax = l;
        for (size_t l = 0; l < table.label_names.size(); ++l) {
            int pred = !table.decisions.empty() ? table.decisions[i][l]
                       : table.multiclass      ? (l == argmax ? 1 : 0)
                                               : (table.probs[i][l] >= thresholds[l] ? 1 : 0);
            ss << ',' << table.truths[i][l] << ',' << std::fixed << table.probs[i][l] << ',' << pred;
            ss.unsetf(std::ios::fixed);
        }
        ss << "\n";
    }
    write_file_atomic(file, ss.str());
}

void write_metric_plots(const fs::path& dir, const PredictionTable& table, const std::vector<double>& thresholds) {
    std::vector<Series> roc, pr;
    for (size_t l = 0; l < table.label_names.size(); ++l) {
        auto s = column(table.probs, l);
        auto t = column(table.truths, l);
        if (!both_classes(t)) continue;
        auto rc = roc_curve(s, t);
        roc.push_back({table.label_names[l] + " (AUC " + std::to_string(roc_auc(s, t)).substr(0, 5) + ")", rc.fpr, rc.tpr});
        auto pc = pr_curve(s, t);
        pr.push_back({table.label_names[l] + " (AP " + std::to_string(pr_auc(s, t)).substr(0, 5) + ")", pc.recall, pc.precision});
    }
    if (!roc.empty()) {
        PlotOptions o;
        o.title = "ROC";
        o.x_label = "1 - specificity";
        o.y_label = "sensitivity";
        o.x_unit_range = o.y_unit_range = o.diagonal = true;
        o.width = o.height = 560;
        save_plot(dir / "roc.png", line_plot(roc, o));
        o.title = "Precision-recall";
        o.x_label = "recall";
        o.y_label = "precision";
        o.diagonal = false;
        save_plot(dir / "pr.png", line_plot(pr, o));
    }
    PlotOptions co;
    co.width = co.height = 520;
    if (table.multiclass) {
        std::vector<int> ti, pi;
        for (size_t i = 0; i < table.size(); ++i) {
            ti.push_back(static_cast<int>(std::max_element(table.truths[i].begin(), table.truths[i].end()) - table.truths[i].begin()));
            pi.push_back(static_cast<int>(std::max_element(table.probs[i].begin(), table.probs[i].end()) - table.probs[i].begin()));
        }
        co.title = "Confusion matrix";
        save_plot(dir / "confusion.png",
                  confusion_plot(confusion_matrix(ti, pi, static_cast<int>(table.label_names.size())), table.label_names, co));
    } else if (!table.label_names.empty() && table.size() > 0) {
        Confusion c;
        if (table.decisions.empty()) {
            c = confusion_at(column(table.probs, 0), column(table.truths, 0), thresholds[0]);
            co.title = table.label_names[0] + " at threshold " + std::to_string(thresholds[0]).substr(0, 5);
        } else {
            c = confusion_of(column(table.truths, 0), column(table.decisions, 0));
            co.title = table.label_names[0] + " (per-fold thresholds)";
        }
        save_plot(dir / "confusion.png", confusion_plot({{c.tn, c.fp}, {c.fn, c.tp}},
                                                        {"no " + table.label_names[0], table.label_names[0]}, co));
    }
}

PredictionTable predict_items(Predictor& predictor, const Dataset& dataset, const std::vector<size_t>& indices,
                              const EvaluateOptions& options) {
    if (options.group) return predict_items_sharded(predictor, dataset, indices, *options.group, options);
    PredictionTable table;
    table.label_names = dataset.label_names;
    table.multiclass = dataset.multiclass;
    LoaderOptions lo;
    lo.batch_size = options.batch;
    lo.shuffle = false;
    lo.augment = false;
    lo.workers = options.workers;
    lo.modality = predictor.modality();
    lo.context = predictor.context();
    // One pass: nothing to reuse, except the slices that are their neighbours' context.
    if (lo.context == 0) lo.cache_max_bytes = 0;
    DataLoader loader(dataset, indices, predictor.preprocess_options(), lo);
    loader.start_epoch(0);
    std::map<size_t, std::vector<double>> by_index;
    Batch b;
    size_t done = 0;
    while (loader.next(b)) {
        std::vector<size_t> idx = b.indices;
        auto preds = predictor.predict_batch(std::move(b));
        for (size_t r = 0; r < idx.size(); ++r) by_index[idx[r]] = preds[r].probabilities;
        done += idx.size();
        if (options.progress) options.progress(done, indices.size());
        b = Batch{};
    }
    for (size_t i : indices) table.add(dataset.items[i], by_index.at(i));
    return table;
}

namespace {

std::vector<size_t> all_items(const Dataset& dataset) {
    std::vector<size_t> all(dataset.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    return all;
}

}  // namespace

PredictionTable predict_items_sharded(Predictor& predictor, const Dataset& dataset, const std::vector<size_t>& indices,
                                      ProcessGroup& group, const EvaluateOptions& options) {
    const auto [begin, end] = shard_range(indices.size(), group.rank(), group.size());
    const std::vector<size_t> mine(indices.begin() + static_cast<long>(begin), indices.begin() + static_cast<long>(end));
    EvaluateOptions local = options;
    local.group = nullptr;  // this rank's block, predicted here
    std::vector<std::vector<double>> rows;
    if (!mine.empty()) rows = predict_items(predictor, dataset, mine, local).probs;
    rows = group.all_gather_rows(rows, dataset.label_names.size());
    if (rows.size() != indices.size()) throw Error("prediction: the ranks gathered a wrong number of rows");
    PredictionTable table;
    table.label_names = dataset.label_names;
    table.multiclass = dataset.multiclass;
    for (size_t k = 0; k < indices.size(); ++k) table.add(dataset.items[indices[k]], rows[k]);
    return table;
}

nlohmann::json evaluate_dataset(Predictor& predictor, const Dataset& dataset, const fs::path& out,
                                const EvaluateOptions& options) {
    if (dataset.label_names != predictor.labels()) {
        std::string have, want;
        for (const auto& l : dataset.label_names) have += (have.empty() ? "" : ",") + l;
        for (const auto& l : predictor.labels()) want += (want.empty() ? "" : ",") + l;
        throw InputError(dataset.root.string() + ": labels [" + have + "] do not match the model's [" + want +
                         "] (select them with `labels`)");
    }
    if (predictor.has_study_model()) return evaluate_studies(predictor, dataset, out, options);
    PredictionTable table = predict_items(predictor, dataset, all_items(dataset), options);
    std::vector<double> thresholds = predictor.thresholds();
    if (options.threshold >= 0) thresholds.assign(thresholds.size(), options.threshold);
    nlohmann::json metrics = compute_metrics(table, thresholds, options.seed);
    metrics["model_thresholds"] = predictor.thresholds();
    if (options.group && options.group->rank() != 0) return metrics;  // rank 0 writes for the group
    write_file_atomic(out / "metrics.json", metrics.dump(2) + "\n");
    write_predictions_csv(out / "predictions.csv", table, thresholds);
    write_metric_plots(out, table, thresholds);
    return metrics;
}

}  // namespace hemoscan

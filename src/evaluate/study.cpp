// Two-level evaluation of ordered data (evaluate/study.hpp).
#include "hemoscan/evaluate/study.hpp"

#include <algorithm>
#include <sstream>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/dist/process_group.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/metrics/classification.hpp"
#include "hemoscan/util/fs.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

std::vector<std::vector<double>> max_over_slices(const std::vector<std::vector<std::vector<double>>>& probs) {
    std::vector<std::vector<double>> out;
    for (const auto& study : probs) {
        if (study.empty()) throw UsageError("max_over_slices: a study without slices");
        std::vector<double> m = study.front();
        for (const auto& row : study) {
            for (size_t l = 0; l < m.size(); ++l) m[l] = std::max(m[l], row.at(l));
        }
        out.push_back(std::move(m));
    }
    return out;
}

StudyTables study_tables(const Dataset& ds, const StudyProbs& p) {
    if (p.probs.size() != p.studies.size() || p.study_probs.size() != p.studies.size()) {
        throw UsageError("study_tables: studies, slice and study probabilities differ in number");
    }
    StudyTables t;
    for (PredictionTable* table : {&t.slices, &t.studies}) {
        table->label_names = ds.label_names;
        table->multiclass = false;
    }
    const size_t L = ds.label_names.size();
    for (size_t s = 0; s < p.studies.size(); ++s) {
        const int fold = p.folds.empty() ? -1 : p.folds.at(s);
        std::vector<int> truth(L, 0);
        for (size_t k = 0; k < p.studies[s].size(); ++k) {
            const DatasetItem& item = ds.items.at(p.studies[s][k]);
            t.slices.add(item, p.probs[s].at(k), fold);
            for (size_t l = 0; l < L; ++l) truth[l] = std::max(truth[l], t.slices.truths.back()[l]);
        }
        const DatasetItem& first = ds.items.at(p.studies[s].front());
        t.studies.paths.push_back(first.study);
        t.studies.patients.push_back(first.patient);
        t.studies.probs.push_back(p.study_probs[s]);
        t.studies.truths.push_back(truth);
        if (fold >= 0) t.studies.folds.push_back(fold);
    }
    return t;
}

nlohmann::json two_level_metrics(const StudyTables& t, const std::vector<double>& thresholds, std::uint64_t seed,
                                 const std::vector<double>& study_thresholds) {
    nlohmann::json j;
    j["slice"] = compute_metrics(t.slices, thresholds, seed);
    j["study"] = compute_metrics(t.studies, study_thresholds.empty() ? thresholds : study_thresholds, seed);
    j["rsna_log_loss"] = nullptr;
    if (has_rsna_any_label(t.slices.label_names) && t.slices.size() > 0) {
        j["rsna_log_loss"] = rsna_weighted_log_loss(t.slices.probs, t.slices.truths, t.slices.label_names);
    }
    j["n_studies"] = t.studies.size();
    return j;
}

void write_two_level_outputs(const fs::path& dir, const StudyTables& t, const std::vector<double>& thresholds,
                             const std::vector<double>& study_thresholds) {
    write_predictions_csv(dir / "predictions.csv", t.slices, thresholds);
    // The study table: "path" is the study; rename the column so that the file says what it holds.
    write_predictions_csv(dir / "study_predictions.csv", t.studies, study_thresholds);
    std::string csv = read_file(dir / "study_predictions.csv");
    if (csv.rfind("path,", 0) == 0) csv = "study," + csv.substr(5);
    write_file_atomic(dir / "study_predictions.csv", csv);
    write_metric_plots(dir, t.slices, thresholds);
}

StudyProbs group_studies(const Dataset& ds, const std::vector<size_t>& items,
                         const std::vector<std::vector<double>>& probs) {
    if (items.size() != probs.size()) throw UsageError("group_studies: items and probabilities differ in number");
    std::vector<int> row_of(ds.size(), -1);
    for (size_t r = 0; r < items.size(); ++r) row_of.at(items[r]) = static_cast<int>(r);
    StudyProbs out;
    for (const auto& study : ds.studies()) {
        std::vector<size_t> members;
        std::vector<std::vector<double>> rows;
        for (size_t i : study) {
            if (row_of[i] < 0) continue;
            members.push_back(i);
            rows.push_back(probs[static_cast<size_t>(row_of[i])]);
        }
        if (members.empty()) continue;
        out.studies.push_back(std::move(members));
        out.probs.push_back(std::move(rows));
    }
    return out;
}

void decide_by_fold(PredictionTable& table, const std::vector<std::vector<double>>& thresholds_by_fold) {
    if (table.folds.size() != table.size()) throw UsageError("decide_by_fold: rows without a fold");
    table.decisions.clear();
    for (size_t r = 0; r < table.size(); ++r) {
        const auto& th = thresholds_by_fold.at(static_cast<size_t>(table.folds[r]));
        std::vector<int> d;
        for (size_t l = 0; l < th.size(); ++l) d.push_back(table.probs[r].at(l) >= th[l] ? 1 : 0);
        table.decisions.push_back(std::move(d));
    }
}

StudyProbs predict_study_slices(Predictor& predictor, const Dataset& ds, const std::vector<size_t>& items,
                                const EvaluateOptions& options) {
    if (!ds.ordered) {
        throw InputError(ds.root.string() + ": a study model needs slices in study order: a manifest with a \"slice\" "
                         "column, or the RSNA layout");
    }
    if (items.empty()) return {};
    const PredictionTable table = predict_items(predictor, ds, items, options);
    return group_studies(ds, items, table.probs);
}

nlohmann::json evaluate_study_probs(Predictor& predictor, const Dataset& ds, StudyProbs stage1, const fs::path& out,
                                    const EvaluateOptions& options) {
    stage1.study_probs = max_over_slices(stage1.probs);
    StudyProbs stage2 = stage1;
    for (size_t s = 0; s < stage1.studies.size(); ++s) {
        std::vector<Prediction> slices;
        for (const auto& p : stage1.probs[s]) slices.push_back({p, {}});
        StudyPrediction sp = predictor.predict_study(slices);
        for (size_t k = 0; k < sp.slices.size(); ++k) stage2.probs[s][k] = sp.slices[k].probabilities;
        stage2.study_probs[s] = sp.study.probabilities;
    }
    std::vector<double> thresholds = predictor.thresholds(), slice_thresholds = predictor.slice_thresholds(),
                        study_thresholds = predictor.study_thresholds();
    if (options.threshold >= 0) {
        for (auto* th : {&thresholds, &slice_thresholds, &study_thresholds}) th->assign(th->size(), options.threshold);
    }
    const StudyTables t2 = study_tables(ds, stage2);
    nlohmann::json metrics = two_level_metrics(t2, thresholds, options.seed, study_thresholds);
    // Stage 1 alone decides a study by its highest slice at the slice model's thresholds.
    metrics["stage1"] = two_level_metrics(study_tables(ds, stage1), slice_thresholds, options.seed);
    metrics["model_thresholds"] = {{"slice", predictor.thresholds()}, {"study", predictor.study_thresholds()}};
    if (options.group && options.group->rank() != 0) return metrics;  // rank 0 writes for the group
    fs::create_directories(out);
    write_two_level_outputs(out, t2, thresholds, study_thresholds);
    write_file_atomic(out / "metrics.json", metrics.dump(2) + "\n");
    return metrics;
}

nlohmann::json evaluate_studies(Predictor& predictor, const Dataset& ds, const fs::path& out,
                                const EvaluateOptions& options) {
    std::vector<size_t> all(ds.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    return evaluate_study_probs(predictor, ds, predict_study_slices(predictor, ds, all, options), out, options);
}

}  // namespace hemoscan

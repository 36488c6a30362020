// hemoscan demo: the README's first command. Synthesizes a cohort, trains the default classifier,
// evaluates it on held-out synthetic studies, predicts one DICOM series with heatmaps, and writes a
// self-contained HTML report.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "commands.hpp"
#include "demo.hpp"
#include "hemoscan/data/csv.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/report/html.hpp"
#include "hemoscan/synth/synth.hpp"
#include "hemoscan/evaluate/classification.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/train/trainer.hpp"
#include "hemoscan/util/fs.hpp"
#include "progress.hpp"
#include "train_options.hpp"

namespace hemoscan::cli {

std::string fixed(double v, int digits) {
    if (std::isnan(v)) return "n/a";
    char b[32];
    std::snprintf(b, sizeof b, "%.*f", digits, v);
    return b;
}

CohortSummary synthesize(const std::string& what, const SynthOptions& so, const fs::path& out, int formats) {
    ProgressBar bar("synthesize " + what, static_cast<size_t>(so.studies));
    auto summary = write_cohort(so, out, formats, [&bar](size_t done, size_t) { bar.update(done); });
    bar.finish();
    return summary;
}

namespace {

double num(const nlohmann::json& j, const char* key) { return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan(""); }

}  // namespace

void add_demo(CLI::App& root, std::vector<Command>& commands) {
    auto a = std::make_shared<DemoArgs>();
    auto* app = root.add_subcommand("demo", "End-to-end demo on synthetic head CT: synthesize, train, evaluate, "
                                            "predict a DICOM series, write report.html");
    app->add_option("--out", a->out, "Output folder")->capture_default_str();
    app->add_option("--train-studies", a->train_studies, "Synthetic studies for training")->capture_default_str();
    app->add_option("--test-studies", a->test_studies, "Held-out synthetic studies")->capture_default_str();
    app->add_option("--slices", a->slices, "Slices per study")->capture_default_str();
    app->add_option("--size", a->size, "Image size for training (pixels)")->capture_default_str();
    app->add_option("--epochs", a->epochs, "Training epochs")->capture_default_str();
    app->add_option("--seed", a->seed, "Seed of everything")->capture_default_str();
    app->add_option("--threads", a->threads, "Compute threads (0 = all cores)")->capture_default_str();
    app->add_flag("--overwrite", a->overwrite, "Replace an earlier demo in OUT (only the demo's own files)");
    app->add_option("--modality", a->modality,
                    "ct (hemorrhage subtypes on CT series) or mr (bleed / calcified / bleed+calcified on multi-sequence MRI; "
                    "defaults there: 300 training and 60 held-out studies, 30 epochs)")
        ->check(CLI::IsMember({"ct", "mr"}))
        ->capture_default_str();
    commands.push_back({app, [a, app] {
        if (a->modality == "mr") {
            // The MR task needs more examples and epochs than the CT demo's defaults (120 studies and 10
            // epochs stayed near chance): 300 / 60 studies and 30 epochs unless given.
            DemoArgs mr = *a;
            if (app->count("--train-studies") == 0) mr.train_studies = 300;
            if (app->count("--test-studies") == 0) mr.test_studies = 60;
            if (app->count("--epochs") == 0) mr.epochs = 30;
            return run_mr_demo(mr);
        }
        const auto t0 = std::chrono::steady_clock::now();
        const fs::path out(a->out);
        if (fs::exists(out / "run" / "state.json")) {
            if (!a->overwrite) {
                throw UsageError(out.string() + " already holds a demo run: use --overwrite or another --out");
            }
            // Only what the demo itself writes; anything else the user put in OUT stays.
            for (const char* part : {"data", "run", "eval", "predict", "report.html"}) fs::remove_all(out / part);
        }
        fs::create_directories(out);

        // 1. Data: DICOM series (Hounsfield units), so that the model can take the three CT windows as
        //    channels; the manifests point at the DICOM slices.
        SynthOptions so;
        so.seed = a->seed;
        so.studies = a->train_studies;
        so.slices = a->slices;
        so.size = 256;
        so.threads = 2;
        auto train_summary = synthesize("training cohort", so, out / "data" / "train", kSynthDicom);
        SynthOptions to = so;
        to.seed = a->seed + 1;
        to.studies = a->test_studies;
        auto test_summary = synthesize("held-out cohort", to, out / "data" / "test", kSynthDicom);

        // 2. Train the default classifier on slices, one sigmoid per label (any + five subtypes), with
        //    the brain, subdural and bone windows as channels (the RSNA winners' input).
        TrainOptions o;
        o.data = (out / "data" / "train").string();
        o.out = (out / "run").string();
        o.model = "cnn";
        o.size = a->size;
        o.epochs = a->epochs;
        o.threads = a->threads;
        o.seed = a->seed;
        o.val_fraction = 0.2;
        o.window = "rgb";
        o.crop_head = false;  // synthetic studies have no letters or rulers around the head
        TrainProgress progress;
        logger().info("training {} on {} slices for {} epochs", o.model, train_summary.slices, o.epochs);
        TrainResult tr = train_classifier(o, progress.callbacks());

        // 3. Evaluate on the held-out studies (PNG manifest), slice level.
        Predictor predictor(tr.model_path, a->threads);
        DatasetOptions dopt;
        dopt.labels = predictor.labels();
        Dataset test = open_dataset(out / "data" / "test", dopt);
        ProgressBar ebar("evaluate held-out slices", test.size());
        EvaluateOptions eo;
        eo.progress = [&ebar](size_t done, size_t) { ebar.update(done); };
        nlohmann::json metrics = evaluate_dataset(predictor, test, out / "eval", eo);
        ebar.finish();

        // 4. Study level: the highest slice probability per study, against the study labels.
        std::vector<size_t> all(test.size());
        for (size_t i = 0; i < all.size(); ++i) all[i] = i;
        PredictionTable slices = predict_items(predictor, test, all);
        std::map<std::string, std::vector<double>> study_max;
        for (size_t i = 0; i < slices.size(); ++i) {
            auto& m = study_max[slices.patients[i]];
            if (m.empty()) m.assign(slices.probs[i].size(), 0.0);
            for (size_t l = 0; l < m.size(); ++l) m[l] = std::max(m[l], slices.probs[i][l]);
        }
        CsvTable studies = read_csv(out / "data" / "test" / "studies.csv");
        const int c_study = studies.column("study"), c_patient = studies.column("patient");
        PredictionTable study_table;
        study_table.label_names = predictor.labels();
        std::vector<std::vector<std::string>> study_rows;
        std::string series_to_predict;
        double best_volume = -1;
        for (size_t r = 0; r < studies.rows.size(); ++r) {
            const auto& row = studies.rows[r];
            std::string patient = c_patient >= 0 ? row[c_patient] : row[0];
            std::string study = c_study >= 0 ? row[c_study] : row[0];
            if (!study_max.count(patient)) continue;
            DatasetItem item;
            item.path = study;
            item.patient = patient;
            for (const auto& l : predictor.labels()) {
                int c = studies.column(l);
                item.labels.push_back(c >= 0 && row[c] == "1" ? 1.f : 0.f);
            }
            const auto& p = study_max[patient];
            study_table.add(item, p);
            auto d = predictor.decide(p);
            std::string truth, found;
            for (size_t l = 1; l < predictor.labels().size(); ++l) {
                if (item.labels[l] > 0.5f) truth += (truth.empty() ? "" : ", ") + predictor.labels()[l];
                if (d[l]) found += (found.empty() ? "" : ", ") + predictor.labels()[l];
            }
            double volume = 0;
            for (const auto& name : synth_subtype_names()) {
                int c = studies.column(name + "_ml");
                if (c >= 0) volume += std::atof(row[c].c_str());
            }
            if (volume > best_volume) {
                best_volume = volume;
                series_to_predict = study;
            }
            study_rows.push_back({study, item.labels[0] > 0.5f ? "bleed" : "normal", truth.empty() ? "-" : truth,
                                  fixed(volume, 1), fixed(p[0], 3), d[0] ? "YES" : "no", found.empty() ? "-" : found});
        }
        std::vector<double> study_thresholds = predictor.thresholds();
        nlohmann::json study_metrics = compute_metrics(study_table, study_thresholds, a->seed);
        write_file_atomic(out / "eval" / "study_metrics.json", study_metrics.dump(2) + "\n");

        // 5. Predict one DICOM series (the held-out study with the largest bleed) with heatmaps.
        fs::path series = out / "data" / "test" / "dicom" / series_to_predict;
        AnalysisOptions ao;
        ao.heatmaps = HeatmapLabel::PerSlice;
        auto t_pred = std::chrono::steady_clock::now();
        const StudyResult res =
            analyze_study(read_study_inputs(series, predictor.modality(), SeriesChoice::Largest).front(), &predictor,
                          nullptr, ao);
        const std::vector<std::string> heatmaps = write_heatmap_overlays(res, out / "predict" / "heatmaps");
        double pred_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_pred).count();
        nlohmann::json pj = nlohmann::json::array();
        for (size_t i = 0; i < res.items.size(); ++i) {
            nlohmann::json o2 = {{"item", res.items[i]}};
            for (size_t l = 0; l < predictor.labels().size(); ++l) {
                o2[predictor.labels()[l]] = res.slices[i].probabilities[l];
            }
            pj.push_back(o2);
        }
        write_file_atomic(out / "predict" / "series.json", nlohmann::json({{"series", series.string()}, {"slices", pj}}).dump(2) + "\n");

        // 6. The report.
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto& any = metrics["labels"][predictor.labels()[0]];
        const auto& sany = study_metrics["labels"][predictor.labels()[0]];
        HtmlReport report("hemoscan demo: hemorrhage detection on synthetic head CT",
                          std::to_string(train_summary.studies) + " training studies, " +
                              std::to_string(test_summary.studies) + " held-out studies, model '" + o.model + "', " +
                              std::to_string(tr.epochs_run) + " epochs; run time " + fixed(secs / 60.0, 1) + " min");
        report.cards({{"Study AUC (any)", fixed(num(sany, "auc")), "held-out studies, max over slices"},
                      {"Sensitivity", fixed(num(sany, "sensitivity")), "studies with a bleed found"},
                      {"Specificity", fixed(num(sany, "specificity")), "normal studies cleared"},
                      {"Slice AUC (any)", fixed(num(any, "auc")), std::to_string(test.size()) + " held-out slices"},
                      {"Series prediction", fixed(pred_secs, 1) + " s",
                       std::to_string(res.items.size()) + " slices with heatmaps"}});
        report.heading("Per-study results (held-out)");
        report.note("Probability = the highest slice probability of 'any' in the study; decision at the threshold "
                    "chosen on the validation slices (" + fixed(predictor.thresholds()[0], 3) +
                    "). Subtypes found: labels whose own slice probability passed their threshold.");
        report.table({"study", "truth", "subtypes (truth)", "bleed mL", "P(any)", "bleed?", "subtypes found"},
                     study_rows, 5);
        report.heading("Slice-level metrics (held-out)");
        std::vector<std::vector<std::string>> mrows;
        for (const auto& [name, l] : metrics["labels"].items()) {
            std::string ci = l["auc_ci95"].is_array() ? "[" + fixed(l["auc_ci95"][0].get<double>()) + ", " +
                                                             fixed(l["auc_ci95"][1].get<double>()) + "]"
                                                       : "n/a";
            mrows.push_back({name, std::to_string(l["positives"].get<long>()), fixed(num(l, "auc")), ci,
                             fixed(num(l, "sensitivity")), fixed(num(l, "specificity")), fixed(num(l, "threshold"))});
        }
        report.table({"label", "positive slices", "AUC", "95% CI", "sensitivity", "specificity", "threshold"}, mrows);
        report.figures({{out / "eval" / "roc.png", "ROC per label (held-out slices)"},
                        {out / "eval" / "confusion.png", "Confusion matrix, any (held-out slices)"}},
                       520);
        report.figures({{out / "run" / "curves.png", "Training: loss and validation AUC per epoch"}}, 1060);
        report.heading("Grad-CAM on the predicted DICOM series");
        report.note(series.string() + ": the slices with the highest P(any), with the model's attention overlaid.");
        std::vector<size_t> order(res.items.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](size_t x, size_t y) {
            return res.slices[x].probabilities[0] > res.slices[y].probabilities[0];
        });
        std::vector<HtmlReport::Figure> cams;
        for (size_t k = 0; k < std::min<size_t>(6, order.size()); ++k) {
            size_t i = order[k];
            if (i < heatmaps.size()) {
                cams.push_back({heatmaps[i], fs::path(res.items[i]).filename().string() + ": P(any) " +
                                                 fixed(res.slices[i].probabilities[0])});
            }
        }
        report.figures(cams, 260);
        report.heading("How this was made");
        report.paragraph("Command: hemoscan demo --out " + a->out + " --seed " + std::to_string(a->seed) +
                         ". Synthetic studies (hemoscan synth) carry known masks and labels; the classifier is "
                         "trained on their slices (three CT windows as channels, one sigmoid per label, RSNA style), validated on a patient-"
                         "grouped 20% of the training studies, then applied to studies it never saw.");
        report.note("Artefacts: " + (out / "run").string() + " (model.pt, log.csv, metrics), " +
                    (out / "eval").string() + " (metrics.json, predictions.csv), " + (out / "predict").string() + ".");
        report.save(out / "report.html");
        std::printf("%s\n", fs::absolute(out / "report.html").string().c_str());
        logger().info("demo finished in {:.1f} min; open {}", secs / 60.0, (out / "report.html").string());
        return 0;
    }});
}

}  // namespace hemoscan::cli

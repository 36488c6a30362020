// hemoscan predict: probabilities per label for images, DICOM files and series, NIfTI volumes, with heatmaps
// (the analysis pipeline of infer/study.hpp; tables and overlays from infer/outputs.hpp).
#include <cstdio>

#include "commands.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan::cli {

void add_predict(CLI::App& root, std::vector<Command>& commands) {
    struct Args {
        std::string model, out, heatmap;
        std::vector<std::string> inputs;
        double threshold = -1;
        int threads = 0, batch = kInferenceBatch;
    };
    auto a = std::make_shared<Args>();
    auto* app = root.add_subcommand("predict", "Predict: probability and decision per label for each input");
    app->add_option("inputs", a->inputs, "Image files, DICOM files, DICOM series folders or zips, folders or zips of images, NIfTI volumes")
        ->required();
    app->add_option("--model", a->model, "RUN/model.pt")->required()->check(CLI::ExistingFile);
    app->add_option("--out", a->out, "Write results to FILE.csv or FILE.json");
    app->add_option("--heatmap", a->heatmap, "Write a Grad-CAM overlay PNG per image/slice into this folder");
    app->add_option("--threshold", a->threshold, "Decision threshold for every label (default: the model's)");
    app->add_option("--threads", a->threads, "Compute threads (0 = all cores)")->capture_default_str();
    app->add_option("--batch", a->batch, "Images or slices per forward pass")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    commands.push_back({app, [a] {
        if (!a->out.empty() && !ends_with(to_lower(a->out), ".csv") && !ends_with(to_lower(a->out), ".json")) {
            throw UsageError("--out must end in .csv or .json: " + a->out);
        }
        Predictor predictor(a->model, a->threads);
        AnalysisOptions ao;
        ao.heatmaps = a->heatmap.empty() ? HeatmapLabel::None : HeatmapLabel::PerSlice;
        ao.threshold = a->threshold;
        ao.batch = a->batch;
        std::vector<StudyResult> results;
        std::vector<std::vector<std::string>> heatmaps;
        for (const auto& in : a->inputs) {
            for (const StudyInput& study : read_study_inputs(in, predictor.modality(), SeriesChoice::All, predictor.preprocess_options().sequences)) {
                results.push_back(analyze_study(study, &predictor, nullptr, ao));
                if (!a->heatmap.empty()) heatmaps.push_back(write_heatmap_overlays(results.back(), a->heatmap));
            }
        }
        const auto& labels = predictor.labels();
        if (!predictor.preprocess_options().sequences.empty()) {
            std::string seqs;
            for (const auto& s : predictor.preprocess_options().sequences) seqs += (seqs.empty() ? "" : ", ") + s;
            std::printf("MR model; channels: %s\n", seqs.c_str());
        }
        auto line = [&](const std::string& name, const Prediction& p, const char* indent) {
            std::printf("%s%s", indent, name.c_str());
            for (size_t l = 0; l < labels.size(); ++l) {
                std::printf("  %s %.4f %s", labels[l].c_str(), p.probabilities[l], p.decisions[l] ? "YES" : "no");
            }
            std::printf("\n");
        };
        for (const auto& r : results) {
            const bool volume = r.per_slice();
            line(r.name + (volume ? " (" + r.kind + ", " + std::to_string(r.items.size()) + " slices: " + study_rule(predictor) + ")" : ""),
                 r.study, "");
            if (!volume) continue;
            for (size_t i = 0; i < r.items.size(); ++i) line(fs::path(r.items[i]).filename().string(), r.slices[i], "    ");
        }
        std::fflush(stdout);
        if (!a->out.empty()) {
            write_file_atomic(a->out, ends_with(to_lower(a->out), ".json")
                                          ? predictions_json(predictor, results, heatmaps, a->threshold).dump(2) + "\n"
                                          : predictions_csv(predictor, results, a->threshold));
            logger().info("wrote {}", a->out);
        }
        if (!a->heatmap.empty()) logger().info("heatmaps in {}", a->heatmap);
        return 0;
    }});
}

}  // namespace hemoscan::cli

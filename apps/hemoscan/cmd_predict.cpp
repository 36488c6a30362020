// hemoscan predict: probabilities per label for images, DICOM files and series, NIfTI volumes, with heatmaps
// (the analysis pipeline of infer/study.hpp; tables and overlays from infer/outputs.hpp), and DICOM SR and
// secondary captures of DICOM inputs (report/dicom_outputs.hpp); predict_inputs (evaluate/predict_inputs.hpp)
// runs them over the inputs, as one process or a group.
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "hemoscan/dist/env.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/evaluate/predict_inputs.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "launch.hpp"

namespace hemoscan::cli {

void add_predict(CLI::App& root, std::vector<Command>& commands) {
    struct Args {
        std::string model, out, heatmap, dicom_out;
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
    app->add_option("--dicom-out", a->dicom_out,
                    "Write a DICOM SR and key-image secondary captures of each DICOM input into DIR/<name>/");
    app->add_option("--threshold", a->threshold, "Decision threshold for every label (default: the model's)");
    app->add_option("--threads", a->threads, "Compute threads (0 = all cores)")->capture_default_str();
    app->add_option("--batch", a->batch, "Images or slices per forward pass")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    // Distributed: the studies of all inputs are sharded over the ranks of torchrun's environment or of
    // --nproc-per-node; rank 0 gathers, prints and writes the table.
    auto group = std::make_shared<GroupArgs>();
    add_group_options(*app, *group, "Predict as N processes on this machine (as torchrun)");
    commands.push_back({app, [a, group] {
        if (!a->out.empty() && !ends_with(to_lower(a->out), ".csv") && !ends_with(to_lower(a->out), ".json")) {
            throw UsageError("--out must end in .csv or .json: " + a->out);
        }
        if (!a->dicom_out.empty() && fs::exists(a->dicom_out) && !fs::is_directory(a->dicom_out)) {
            throw UsageError("--dicom-out " + a->dicom_out + " is a file, not a folder");
        }
        DistEnv dist;
        if (const auto launched = launch_or_join(*group, dist)) return *launched;
        Predictor predictor(a->model, a->threads);
        PredictInputsOptions po;
        po.analysis.threshold = a->threshold;
        po.analysis.batch = a->batch;
        po.heatmap_dir = a->heatmap;
        po.dicom_out = a->dicom_out;
        po.table = a->out;
        // The DICOM objects name the architecture, never a local path.
        const nlohmann::json& meta = predictor.meta();
        const std::string file = fs::path(a->model).filename().string();
        po.dicom.model_name =
            meta.contains("model") && meta["model"].is_object() ? meta["model"].value("name", file) : file;
        const std::shared_ptr<ProcessGroup> process_group = join_process_group(dist, group->timeout_s);
        po.group = process_group.get();
        const std::vector<StudyResult> results = predict_inputs(predictor, a->inputs, po).results;
        if (dist.rank > 0) return 0;  // rank 0 reports for the group
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
        if (!a->heatmap.empty()) logger().info("heatmaps in {}", a->heatmap);
        return 0;
    }});
}

}  // namespace hemoscan::cli

// hemoscan predict: probabilities per label for images, DICOM files and series, NIfTI volumes, with heatmaps
// (the analysis pipeline of infer/study.hpp; tables and overlays from infer/outputs.hpp), and DICOM SR and
// secondary captures of DICOM inputs (report/dicom_outputs.hpp).
#include <cstdio>
#include <map>

#include "commands.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/report/dicom_outputs.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan::cli {

namespace {

// The folder of a study's DICOM objects under --dicom-out: the input's name (a folder's, or a file's stem),
// "_s<k>" for the k-th series of a folder that holds several, "_<n>" when an earlier input had the name.
std::string dicom_out_name(const std::string& input, size_t series, size_t count, std::map<std::string, int>& used) {
    fs::path p = fs::path(input).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    std::string name = safe_filename(fs::is_directory(input) ? p.filename().string() : p.stem().string());
    if (count > 1) name += "_s" + std::to_string(series + 1);
    const int n = ++used[name];
    return n > 1 ? name + "_" + std::to_string(n) : name;
}

}  // namespace

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
    commands.push_back({app, [a] {
        if (!a->out.empty() && !ends_with(to_lower(a->out), ".csv") && !ends_with(to_lower(a->out), ".json")) {
            throw UsageError("--out must end in .csv or .json: " + a->out);
        }
        if (!a->dicom_out.empty() && fs::exists(a->dicom_out) && !fs::is_directory(a->dicom_out)) {
            throw UsageError("--dicom-out " + a->dicom_out + " is a file, not a folder");
        }
        Predictor predictor(a->model, a->threads);
        AnalysisOptions ao;
        // The secondary captures show the heatmap of the key slice.
        ao.heatmaps = a->heatmap.empty() && a->dicom_out.empty() ? HeatmapLabel::None : HeatmapLabel::PerSlice;
        ao.threshold = a->threshold;
        ao.batch = a->batch;
        std::vector<StudyResult> results;
        std::vector<std::vector<std::string>> heatmaps;
        DicomOutputOptions dicom;  // the objects name the architecture, never a local path
        const nlohmann::json& meta = predictor.meta();
        const std::string file = fs::path(a->model).filename().string();
        dicom.model_name =
            meta.contains("model") && meta["model"].is_object() ? meta["model"].value("name", file) : file;
        std::map<std::string, int> dicom_names;
        for (const auto& in : a->inputs) {
            const auto studies = read_study_inputs(in, predictor.modality(), SeriesChoice::All,
                                                   predictor.preprocess_options().sequences);
            for (size_t s = 0; s < studies.size(); ++s) {
                const StudyInput& study = studies[s];
                results.push_back(analyze_study(study, &predictor, nullptr, ao));
                if (!a->heatmap.empty()) heatmaps.push_back(write_heatmap_overlays(results.back(), a->heatmap));
                if (a->dicom_out.empty()) continue;
                if (has_dicom_source(study)) {
                    const fs::path dir = fs::path(a->dicom_out) / dicom_out_name(in, s, studies.size(), dicom_names);
                    write_dicom_outputs(dir, study, results.back(), &predictor, nullptr, dicom);
                    logger().info("DICOM SR and key images of {} in {}", study.name, dir.string());
                } else {
                    logger().warn("{}: no DICOM files to reference (not DICOM, or read from a zip); no DICOM outputs "
                                  "for it", study.name);
                }
                if (a->heatmap.empty()) results.back().heatmaps.clear();  // made for the captures only
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

// hemoscan predict: probabilities per label for images, DICOM files and series, with heatmaps.
#include <cstdio>
#include <sstream>

#include "commands.hpp"
#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/train/predict_inputs.hpp"
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
    app->add_option("inputs", a->inputs, "Image files, DICOM files, DICOM series folders, folders of images")
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
        PredictInputsOptions po;
        po.heatmap_dir = a->heatmap;
        po.threshold = a->threshold;
        po.batch = a->batch;
        std::vector<fs::path> inputs(a->inputs.begin(), a->inputs.end());
        auto results = predict_inputs(predictor, inputs, po);
        const auto& labels = predictor.labels();

        auto line = [&](const std::string& name, const Prediction& p, const char* indent) {
            std::printf("%s%s", indent, name.c_str());
            for (size_t l = 0; l < labels.size(); ++l) {
                std::printf("  %s %.4f %s", labels[l].c_str(), p.probabilities[l], p.decisions[l] ? "YES" : "no");
            }
            std::printf("\n");
        };
        nlohmann::json js = nlohmann::json::array();
        std::ostringstream csv;
        csv << "input,item,kind";
        for (const auto& l : labels) csv << ',' << csv_escape(l + "_prob") << ',' << csv_escape(l + "_pred");
        csv << "\n";
        auto csv_row = [&](const std::string& input, const std::string& item, const std::string& kind, const Prediction& p) {
            csv << csv_escape(input) << ',' << csv_escape(item) << ',' << kind;
            for (size_t l = 0; l < labels.size(); ++l) csv << ',' << p.probabilities[l] << ',' << p.decisions[l];
            csv << "\n";
        };
        auto pj = [&](const Prediction& p) {
            nlohmann::json o = nlohmann::json::object();
            for (size_t l = 0; l < labels.size(); ++l) {
                double t = a->threshold >= 0 ? a->threshold : predictor.thresholds()[l];
                o[labels[l]] = {{"probability", p.probabilities[l]}, {"decision", p.decisions[l] != 0}, {"threshold", t}};
            }
            return o;
        };
        for (const auto& r : results) {
            line(r.input + (r.kind == "series" ? " (series, " + std::to_string(r.items.size()) + " slices: max)" : ""),
                 r.overall, "");
            nlohmann::json rj = {{"input", r.input}, {"kind", r.kind}, {"result", pj(r.overall)}};
            if (r.kind == "series") {
                nlohmann::json slices = nlohmann::json::array();
                for (size_t i = 0; i < r.items.size(); ++i) {
                    line(fs::path(r.items[i]).filename().string(), r.per_item[i], "    ");
                    nlohmann::json sj = {{"item", r.items[i]}, {"result", pj(r.per_item[i])}};
                    if (i < r.heatmaps.size()) sj["heatmap"] = r.heatmaps[i];
                    slices.push_back(sj);
                    csv_row(r.input, r.items[i], "slice", r.per_item[i]);
                }
                rj["slices"] = slices;
                csv_row(r.input, "", "study", r.overall);
            } else {
                if (!r.heatmaps.empty()) rj["heatmap"] = r.heatmaps.front();
                csv_row(r.input, r.items.front(), r.kind, r.overall);
            }
            js.push_back(rj);
        }
        std::fflush(stdout);
        if (!a->out.empty()) {
            write_file_atomic(a->out, ends_with(to_lower(a->out), ".json") ? js.dump(2) + "\n" : csv.str());
            logger().info("wrote {}", a->out);
        }
        if (!a->heatmap.empty()) logger().info("heatmaps in {}", a->heatmap);
        return 0;
    }});
}

}  // namespace hemoscan::cli

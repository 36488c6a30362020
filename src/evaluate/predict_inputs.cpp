// `hemoscan predict` over many inputs, as one process or as a group (evaluate/predict_inputs.hpp).
#include "hemoscan/evaluate/predict_inputs.hpp"

#include <cmath>
#include <cstdint>
#include <map>
#include <tuple>

#include "hemoscan/dist/process_group.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

std::vector<StudyInput> read_inputs(const Predictor& predictor, const std::string& input) {
    return read_study_inputs(input, predictor.modality(), SeriesChoice::All, predictor.preprocess_options().sequences);
}

std::string dicom_out_name(const std::string& input, size_t series, size_t count, std::map<std::string, int>& used) {
    fs::path p = fs::path(input).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    std::string name = safe_filename(fs::is_directory(input) ? p.filename().string() : p.stem().string());
    if (count > 1) name += "_s" + std::to_string(series + 1);
    const int n = ++used[name];
    return n > 1 ? name + "_" + std::to_string(n) : name;
}

// The DICOM folder names of one input's studies ("" for a study that gets none), counted in `used`
// across the inputs so far.
std::vector<std::string> dicom_names(const std::string& input, const std::vector<StudyInput>& studies, bool dicom_out,
                                     std::map<std::string, int>& used) {
    std::vector<std::string> names;
    for (size_t s = 0; s < studies.size(); ++s) {
        names.push_back(dicom_out && has_dicom_source(studies[s]) ? dicom_out_name(input, s, studies.size(), used)
                                                                  : std::string());
    }
    return names;
}

// A group's plan: per input, the DICOM names of its studies (so also how many it holds), as one
// process names them. Reading warnings stay quiet here: the rank that analyses a study reads it again
// and reports them once.
std::vector<std::vector<std::string>> plan_studies(const Predictor& predictor, const std::vector<std::string>& inputs,
                                                   bool dicom_out) {
    const ScopedLogQuiet quiet(spdlog::level::err);
    std::map<std::string, int> used;
    std::vector<std::vector<std::string>> plan;
    for (const auto& in : inputs) plan.push_back(dicom_names(in, read_inputs(predictor, in), dicom_out, used));
    return plan;
}

// One study analysed and its files written; the result, without model inputs and heatmaps, into `out`.
void analyse_study(Predictor& predictor, const StudyInput& study, const std::string& dicom_name,
                   const PredictInputsOptions& options, const AnalysisOptions& analysis, PredictedInputs& out) {
    StudyResult r = analyze_study(study, &predictor, nullptr, analysis);
    std::vector<std::string> maps;
    if (!options.heatmap_dir.empty()) maps = write_heatmap_overlays(r, options.heatmap_dir);
    if (!options.dicom_out.empty() && !dicom_name.empty()) {
        const fs::path dir = options.dicom_out / dicom_name;
        write_dicom_outputs(dir, study, r, &predictor, nullptr, options.dicom);
        logger().info("DICOM SR and key images of {} in {}", study.name, dir.string());
    } else if (!options.dicom_out.empty()) {
        logger().warn("{}: no DICOM files to reference (not DICOM, or read from a zip); no DICOM outputs for it",
                      study.name);
    }
    r.samples.clear();  // written: the tables need neither
    r.heatmaps.clear();
    out.results.push_back(std::move(r));
    out.heatmaps.push_back(std::move(maps));
}

// Results as text for the gather. Probabilities keep every bit (JSON's shortest round-trip form);
// a non-finite one becomes null and comes back as NaN.
nlohmann::json prediction_record(const Prediction& p) {
    nlohmann::json probs = nlohmann::json::array();
    for (double v : p.probabilities) probs.push_back(std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr));
    return {{"probabilities", probs}, {"decisions", p.decisions}};
}

Prediction prediction_from(const nlohmann::json& j) {
    Prediction p;
    for (const auto& v : j["probabilities"]) p.probabilities.push_back(v.is_number() ? v.get<double>() : std::nan(""));
    p.decisions = j["decisions"].get<std::vector<int>>();
    return p;
}

std::string results_text(const PredictedInputs& mine) {
    nlohmann::json all = nlohmann::json::array();
    for (size_t i = 0; i < mine.results.size(); ++i) {
        const StudyResult& r = mine.results[i];
        nlohmann::json slices = nlohmann::json::array();
        for (const auto& p : r.slices) slices.push_back(prediction_record(p));
        all.push_back({{"name", r.name},
                       {"kind", r.kind},
                       {"items", r.items},
                       {"warnings", r.warnings},
                       {"slices", slices},
                       {"study", prediction_record(r.study)},
                       {"top_slice", r.top_slice},
                       {"heatmap_label", r.heatmap_label},
                       {"heatmaps", mine.heatmaps[i]}});
    }
    return all.dump();
}

// Every rank's results, in rank (= input) order.
PredictedInputs gather_results(ProcessGroup& group, const PredictedInputs& mine) {
    PredictedInputs all;
    for (const std::string& text : group.all_gather_strings(results_text(mine))) {
        for (const auto& j : nlohmann::json::parse(text)) {
            StudyResult r;
            r.name = j["name"].get<std::string>();
            r.kind = j["kind"].get<std::string>();
            r.items = j["items"].get<std::vector<std::string>>();
            r.warnings = j["warnings"].get<std::vector<std::string>>();
            for (const auto& p : j["slices"]) r.slices.push_back(prediction_from(p));
            r.study = prediction_from(j["study"]);
            r.top_slice = j["top_slice"].get<size_t>();
            r.heatmap_label = j["heatmap_label"].get<int>();
            all.results.push_back(std::move(r));
            all.heatmaps.push_back(j["heatmaps"].get<std::vector<std::string>>());
        }
    }
    return all;
}

void write_table(const Predictor& predictor, const PredictedInputs& p, const PredictInputsOptions& options) {
    const double threshold = options.analysis.threshold;
    write_file_atomic(options.table, ends_with(to_lower(options.table.string()), ".json")
                                         ? predictions_json(predictor, p.results, p.heatmaps, threshold).dump(2) + "\n"
                                         : predictions_csv(predictor, p.results, threshold));
    logger().info("wrote {}", options.table.string());
}

}  // namespace

PredictedInputs predict_inputs(Predictor& predictor, const std::vector<std::string>& inputs,
                               const PredictInputsOptions& options) {
    AnalysisOptions analysis = options.analysis;
    const bool dicom_out = !options.dicom_out.empty();
    analysis.heatmaps = options.heatmap_dir.empty() && !dicom_out ? HeatmapLabel::None : HeatmapLabel::PerSlice;
    ProcessGroup* group = options.group;
    // One process reads each input once and streams; a group needs the list of studies first.
    std::vector<std::vector<std::string>> plan;
    size_t begin = 0, end = SIZE_MAX;
    if (group) {
        plan = plan_studies(predictor, inputs, dicom_out);
        size_t n = 0;
        for (const auto& names : plan) n += names.size();
        std::tie(begin, end) = shard_range(n, group->rank(), group->size());
    }
    PredictedInputs mine;
    std::map<std::string, int> used;
    size_t first = 0;  // the index of the input's first study among all
    for (size_t i = 0; i < inputs.size() && first < end; ++i) {
        if (group && first + plan[i].size() <= begin) {  // another rank's input
            first += plan[i].size();
            continue;
        }
        const std::vector<StudyInput> studies = read_inputs(predictor, inputs[i]);
        const std::vector<std::string> names = group ? plan[i] : dicom_names(inputs[i], studies, dicom_out, used);
        if (names.size() != studies.size()) {
            throw InputError(inputs[i] + ": changed while it was read (" + std::to_string(names.size()) + " then " +
                             std::to_string(studies.size()) + " studies)");
        }
        for (size_t s = 0; s < studies.size(); ++s) {
            if (first + s < begin || first + s >= end) continue;
            analyse_study(predictor, studies[s], names[s], options, analysis, mine);
        }
        first += studies.size();
    }
    PredictedInputs all = group ? gather_results(*group, mine) : std::move(mine);
    if (!options.table.empty() && (!group || group->rank() == 0)) write_table(predictor, all, options);
    return all;
}

}  // namespace hemoscan

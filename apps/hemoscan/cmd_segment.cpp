// hemoscan segment: label maps (NIfTI, in the input's own geometry), overlay PNGs and bleed volumes per
// class for DICOM series, NIfTI volumes and images, through the analysis pipeline (infer/study.hpp) and its
// writers (infer/outputs.hpp), and with --dicom-out a DICOM SEG, SR and key-image captures of each DICOM input
// (report/dicom_outputs.hpp). Every input is read and segmented before anything is written, so a bad input
// leaves no partial output behind.
#include <spdlog/fmt/fmt.h>

#include <cstdio>
#include <map>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/report/dicom_outputs.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "progress.hpp"

namespace hemoscan::cli {

namespace {

// The output name of an input: file name without .nii(.gz)/extension, or the folder's name.
std::string base_name(const fs::path& input) {
    fs::path p = input.lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    std::string name = p.filename().string();
    const std::string lower = to_lower(name);
    if (ends_with(lower, ".nii.gz")) {
        name.resize(name.size() - 7);
    } else if (!fs::is_directory(input)) {
        name = p.stem().string();
    }
    return safe_filename(name);
}


}  // namespace

void add_segment(CLI::App& root, std::vector<Command>& commands) {
    struct Args {
        std::vector<std::string> models;
        std::string out, dicom_out;
        std::vector<std::string> inputs;
        int threads = 0;
        double alpha = 0.4, min_component_ml = -1;
    };
    auto a = std::make_shared<Args>();
    auto* app = root.add_subcommand("segment", "Segment hemorrhages: NIfTI label maps, overlays, volumes per class");
    app->add_option("inputs", a->inputs, "DICOM series folders or zips, DICOM files, NIfTI files (.nii/.nii.gz), images")
        ->required();
    app->add_option("--model", a->models,
                    "RUN/model.pt of `train --task segment`; repeat it for an ensemble (probabilities averaged)")
        ->required()
        ->allow_extra_args(false)  // one file per --model: the inputs after it stay inputs
        ->check(CLI::ExistingFile);
    app->add_option("--out", a->out, "Output folder")->required();
    app->add_option("--dicom-out", a->dicom_out,
                    "Also write a DICOM SEG, SR and key-image secondary captures of each DICOM input into DIR/<name>/");
    app->add_option("--threads", a->threads, "Compute threads (0 = all cores)")->capture_default_str();
    app->add_option("--alpha", a->alpha, "Overlay opacity of the label colours")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    add_min_component_option(*app, a->min_component_ml);
    app->footer("Writes OUT/<name>_seg.nii.gz (label map in the input's geometry), OUT/<name>_overlay/slice_NNN.png\n"
                "(slices with a finding and the middle slice), OUT/volumes.csv and OUT/volumes.json (mL per class).");
    commands.push_back({app, [a] {
        const fs::path out(a->out);
        if (fs::exists(out) && !fs::is_directory(out)) throw UsageError("--out " + a->out + " is a file, not a folder");
        if (!a->dicom_out.empty() && fs::exists(a->dicom_out) && !fs::is_directory(a->dicom_out)) {
            throw UsageError("--dicom-out " + a->dicom_out + " is a file, not a folder");
        }
        SegPredictor predictor(std::vector<fs::path>(a->models.begin(), a->models.end()), a->threads);
        if (a->min_component_ml >= 0) predictor.set_min_component_ml(a->min_component_ml);
        const nlohmann::json& meta = predictor.meta();
        const std::string modality =
            meta.contains("preprocess") ? meta["preprocess"].value("modality", std::string("ct")) : std::string("ct");
        const ModalityPolicy policy = parse_modality_policy(modality);
        const auto& classes = predictor.class_names();

        // Cheap checks first, so that a typo in the last input does not cost the segmentation of the others.
        std::vector<std::string> names;
        std::map<std::string, int> used;
        for (const auto& in : a->inputs) {
            std::error_code ec;
            if (!fs::exists(in, ec)) throw InputError(in + ": no such file or folder");
            std::string name = base_name(in);
            const int n = ++used[name];
            if (n > 1) name += "_" + std::to_string(n);
            names.push_back(name);
        }

        std::vector<SegmentationOutput> outputs;
        // --dicom-out: the DICOM inputs with their results, written with the rest once every input succeeded.
        struct DicomStudy {
            StudyInput input;
            StudyResult result;
            std::string name;
        };
        std::vector<DicomStudy> dicom_studies;
        ProgressBar bar("segment", a->inputs.size());
        for (size_t i = 0; i < a->inputs.size(); ++i) {
            std::vector<StudyInput> read = read_study_inputs(a->inputs[i], policy, SeriesChoice::Largest);
            if (read.size() > 1) {
                throw InputError(a->inputs[i] + ": a folder of " + std::to_string(read.size()) +
                                 " images, not a DICOM series; give the image files themselves");
            }
            StudyInput& study = read.front();
            if (study.kind == "images") {  // a zip of images: they need not share one geometry
                throw InputError(a->inputs[i] + ": a zip of " + std::to_string(study.slices.size()) +
                                 " images, not a DICOM series; give the image files themselves");
            }
            StudyResult r = analyze_study(study, nullptr, &predictor);
            SegmentationOutput o;
            o.input = a->inputs[i];
            o.name = names[i];
            o.rows = study.slices.front().pixels.rows;
            o.cols = study.slices.front().pixels.cols;
            o.segmentation = r.segmentation;
            o.overlays = segmentation_overlay_pngs(study, r.segmentation, a->alpha);
            outputs.push_back(std::move(o));
            if (!a->dicom_out.empty()) {
                if (has_dicom_source(study)) {
                    dicom_studies.push_back({std::move(study), std::move(r), names[i]});
                } else {
                    logger().warn("{}: no DICOM files to reference (not DICOM, or read from a zip); no DICOM outputs "
                                  "for it", a->inputs[i]);
                }
            }
            bar.update(i + 1);
        }
        bar.finish();

        // Everything succeeded: write.
        write_segmentation_outputs(out, outputs, predictor, a->models);
        DicomOutputOptions dicom;  // the objects name the architecture, never a local path
        const std::string arch = meta.contains("model") && meta["model"].is_object()
                                     ? meta["model"].value("name", std::string())
                                     : std::string();
        dicom.seg_model_name = (arch.empty() ? fs::path(a->models.front()).filename().string() : arch) +
                               (a->models.size() > 1 ? " ensemble of " + std::to_string(a->models.size()) : "");
        for (const DicomStudy& d : dicom_studies) {
            const fs::path dir = fs::path(a->dicom_out) / d.name;
            write_dicom_outputs(dir, d.input, d.result, nullptr, &predictor, dicom);
            logger().info("DICOM SEG, SR and key images of {} in {}", d.name, dir.string());
        }
        for (const SegmentationOutput& o : outputs) {
            const SegmentationResult& r = o.segmentation.result;
            std::printf("%s: bleed %.2f mL", o.name.c_str(), r.bleed_volume_ml);
            std::string parts;
            for (size_t c = 1; c < classes.size(); ++c) {
                if (r.volume_ml[c] > 0) parts += fmt::format("{}{} {:.2f}", parts.empty() ? "" : ", ", classes[c], r.volume_ml[c]);
            }
            std::printf("%s%s%s\n", parts.empty() ? "" : " (", parts.c_str(), parts.empty() ? "" : ")");
        }
        std::fflush(stdout);
        logger().info("wrote {} label maps, overlays and volumes.csv/json to {}", outputs.size(), out.string());
        return 0;
    }});
}

}  // namespace hemoscan::cli

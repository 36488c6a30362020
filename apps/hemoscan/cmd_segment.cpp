// hemoscan segment: label maps (NIfTI, in the input's own geometry), overlay PNGs and bleed volumes per
// class for DICOM series, NIfTI volumes and images. Every input is read and segmented before anything is
// written, so a bad input leaves no partial output behind.
#include <opencv2/imgcodecs.hpp>
#include <spdlog/fmt/fmt.h>

#include <cstdio>
#include <map>
#include <sstream>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/train/segment.hpp"
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

struct Output {
    std::string input, name;
    std::vector<std::pair<std::string, std::string>> overlays;  // file name, PNG bytes
    SegmentationResult result;
    int rows = 0, cols = 0;
};

}  // namespace

void add_segment(CLI::App& root, std::vector<Command>& commands) {
    struct Args {
        std::vector<std::string> models;
        std::string out;
        std::vector<std::string> inputs;
        int threads = 0;
        double alpha = 0.4, min_component_ml = -1;
    };
    auto a = std::make_shared<Args>();
    auto* app = root.add_subcommand("segment", "Segment hemorrhages: NIfTI label maps, overlays, volumes per class");
    app->add_option("inputs", a->inputs, "DICOM series folders, DICOM files, NIfTI files (.nii/.nii.gz), images")
        ->required();
    app->add_option("--model", a->models,
                    "RUN/model.pt of `train --task segment`; repeat it for an ensemble (probabilities averaged)")
        ->required()
        ->allow_extra_args(false)  // one file per --model: the inputs after it stay inputs
        ->check(CLI::ExistingFile);
    app->add_option("--out", a->out, "Output folder")->required();
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

        std::vector<Output> outputs;
        ProgressBar bar("segment", a->inputs.size());
        for (size_t i = 0; i < a->inputs.size(); ++i) {
            const Volume volume = read_segment_input(a->inputs[i], policy);
            Output o;
            o.input = a->inputs[i];
            o.name = names[i];
            o.result = predictor.segment(volume);
            o.rows = volume.rows();
            o.cols = volume.cols();
            const auto& labels = o.result.labels.slices;
            const int middle = volume.depth() / 2;
            for (int k = 0; k < volume.depth(); ++k) {
                const cv::Mat& l = labels[static_cast<size_t>(k)];
                if (k != middle && cv::countNonZero(l) == 0) continue;
                ImageMeta m = static_cast<size_t>(k) < volume.slice_meta.size() ? volume.slice_meta[static_cast<size_t>(k)]
                                                                                 : ImageMeta{};
                if (volume.slice_meta.empty()) {
                    double lo;
                    cv::minMaxLoc(volume.slices[static_cast<size_t>(k)], &lo);
                    m.is_hu = lo <= -900;
                }
                std::vector<uchar> png;
                cv::imencode(".png", segmentation_overlay(volume.slices[static_cast<size_t>(k)], m, l, a->alpha), png,
                             {cv::IMWRITE_PNG_COMPRESSION, 6});
                o.overlays.emplace_back(fmt::format("slice_{:03d}.png", k + 1), std::string(png.begin(), png.end()));
            }
            outputs.push_back(std::move(o));
            bar.update(i + 1);
        }
        bar.finish();

        // Everything succeeded: write.
        fs::create_directories(out);
        nlohmann::json js = {{"model", a->models.size() == 1 ? nlohmann::json(a->models.front()) : nlohmann::json(a->models)},
                             {"classes", classes},
                             {"bleed_classes", predictor.bleed_classes()},
                             {"inputs", nlohmann::json::array()}};
        std::ostringstream csv;
        csv << "input,name,slices,bleed_ml";
        for (size_t c = 1; c < classes.size(); ++c) csv << ',' << csv_escape(classes[c] + "_ml");
        csv << '\n';
        for (const Output& o : outputs) {
            const std::string mask = o.name + "_seg.nii.gz";
            write_nifti_labels(out / mask, o.result.labels.slices, o.result.labels.geometry,
                               "hemoscan segment " + fs::path(a->models.front()).filename().string() +
                                   (a->models.size() > 1 ? " (ensemble)" : ""));
            const fs::path overlay_dir = out / (o.name + "_overlay");
            nlohmann::json overlays = nlohmann::json::array();
            for (const auto& [file, bytes] : o.overlays) {
                write_file_atomic(overlay_dir / file, bytes);
                overlays.push_back((fs::path(o.name + "_overlay") / file).generic_string());
            }
            nlohmann::json vols = nlohmann::json::object();
            for (size_t c = 1; c < classes.size(); ++c) vols[classes[c]] = o.result.volume_ml[c];
            const auto& g = o.result.labels.geometry;
            js["inputs"].push_back({{"input", o.input},
                                    {"name", o.name},
                                    {"mask", mask},
                                    {"overlays", overlays},
                                    {"size", {o.cols, o.rows, o.result.labels.depth()}},
                                    {"spacing_mm", g.spacing},
                                    {"bleed_volume_ml", o.result.bleed_volume_ml},
                                    {"volume_ml", vols}});
            csv << csv_escape(o.input) << ',' << csv_escape(o.name) << ',' << o.result.labels.depth() << ','
                << fmt::format("{:.3f}", o.result.bleed_volume_ml);
            for (size_t c = 1; c < classes.size(); ++c) csv << ',' << fmt::format("{:.3f}", o.result.volume_ml[c]);
            csv << '\n';

            std::printf("%s: bleed %.2f mL", o.name.c_str(), o.result.bleed_volume_ml);
            std::string parts;
            for (size_t c = 1; c < classes.size(); ++c) {
                if (o.result.volume_ml[c] > 0) parts += fmt::format("{}{} {:.2f}", parts.empty() ? "" : ", ", classes[c], o.result.volume_ml[c]);
            }
            std::printf("%s%s%s\n", parts.empty() ? "" : " (", parts.c_str(), parts.empty() ? "" : ")");
        }
        write_file_atomic(out / "volumes.csv", csv.str());
        write_file_atomic(out / "volumes.json", js.dump(2) + "\n");
        std::fflush(stdout);
        logger().info("wrote {} label maps, overlays and volumes.csv/json to {}", outputs.size(), out.string());
        return 0;
    }});
}

}  // namespace hemoscan::cli

// Writers of the analysis pipeline's results (infer/outputs.hpp).
#include "hemoscan/infer/outputs.hpp"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <spdlog/fmt/fmt.h>

#include <sstream>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/explain/overlay.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/parallel.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace fs = std::filesystem;
using nlohmann::json;

json prediction_json(const Predictor& predictor, const Prediction& p, double threshold, bool study) {
    json o = json::object();
    const auto& labels = predictor.labels();
    const auto& thresholds = study ? predictor.study_thresholds() : predictor.thresholds();
    for (size_t l = 0; l < labels.size(); ++l) {
        const double t = threshold >= 0 ? threshold : thresholds[l];
        o[labels[l]] = {{"probability", p.probabilities[l]}, {"decision", p.decisions[l] != 0}, {"threshold", t}};
    }
    return o;
}

json predictions_json(const Predictor& predictor, const std::vector<StudyResult>& results,
                      const std::vector<std::vector<std::string>>& heatmaps, double threshold) {
    json js = json::array();
    for (size_t s = 0; s < results.size(); ++s) {
        const StudyResult& r = results[s];
        const std::vector<std::string> none;
        const auto& maps = s < heatmaps.size() ? heatmaps[s] : none;
        json rj = {{"input", r.name}, {"kind", r.kind}, {"result", prediction_json(predictor, r.study, threshold, true)}};
        const auto& sequences = predictor.preprocess_options().sequences;
        if (!sequences.empty()) rj["sequences"] = sequences;  // the MR channels the model read
        if (r.per_slice()) {
            json slices = json::array();
            for (size_t i = 0; i < r.items.size(); ++i) {
                json sj = {{"item", r.items[i]}, {"result", prediction_json(predictor, r.slices[i], threshold)}};
                if (i < maps.size()) sj["heatmap"] = maps[i];
                slices.push_back(sj);
            }
            rj["slices"] = slices;
            rj["study_rule"] = study_rule(predictor);
        } else if (!maps.empty()) {
            rj["heatmap"] = maps.front();
        }
        js.push_back(rj);
    }
    return js;
}

std::string predictions_csv(const Predictor& predictor, const std::vector<StudyResult>& results, double threshold) {
    const auto& labels = predictor.labels();
    std::ostringstream csv;
    csv << "input,item,kind";
    for (const auto& l : labels) csv << ',' << csv_escape(l + "_prob") << ',' << csv_escape(l + "_pred");
    csv << "\n";
    auto row = [&](const std::string& input, const std::string& item, const std::string& kind, const Prediction& p) {
        csv << csv_escape(input) << ',' << csv_escape(item) << ',' << kind;
        for (size_t l = 0; l < labels.size(); ++l) csv << ',' << p.probabilities[l] << ',' << p.decisions[l];
        csv << "\n";
    };
    for (const StudyResult& r : results) {
        if (r.per_slice()) {
            for (size_t i = 0; i < r.items.size(); ++i) row(r.name, r.items[i], "slice", r.slices[i]);
            row(r.name, "", "study", r.study);
        } else {
            row(r.name, r.items.front(), r.kind, r.study);
        }
    }
    return csv.str();
}

cv::Mat heatmap_overlay(const Sample& sample, const cv::Mat& cam) {
    // Show what the model saw: the first channel (or the three windows as RGB), rescaled to 8-bit.
    cv::Mat shown;
    std::vector<cv::Mat> ch;
    cv::split(sample.image, ch);
    cv::Mat base = ch.size() == 3 ? cv::Mat() : ch[0];  // MR sequences: the first
    if (ch.size() == 3) {
        std::vector<cv::Mat> bgr{ch[2], ch[1], ch[0]};
        cv::merge(bgr, base);
    }
    double lo, hi;
    cv::minMaxLoc(base.reshape(1), &lo, &hi);
    base.convertTo(shown, CV_8U, hi > lo ? 255.0 / (hi - lo) : 1.0, hi > lo ? -lo * 255.0 / (hi - lo) : 0.0);
    return overlay_heatmap(shown, cam);
}

std::vector<std::string> write_heatmap_overlays(const StudyResult& r, const fs::path& dir) {
    if (r.heatmaps.size() != r.samples.size()) throw UsageError("write_heatmap_overlays: the result has no heatmaps");
    std::vector<std::string> paths;
    const fs::path name = safe_filename(fs::path(r.name).filename().string());
    const bool folder = r.per_slice();
    for (const auto& item : r.items) {
        const fs::path file = safe_filename(fs::path(item).stem().string()) + ".png";
        paths.push_back((folder ? dir / name / file : dir / file).string());
    }
    if (!paths.empty()) fs::create_directories(fs::path(paths.front()).parent_path());
    // Colouring and PNG encoding are independent per slice (and a tenth of a series' time).
    parallel_for_index(r.samples.size(), 0, [&](size_t i) {
        write_image_2d(paths[i], heatmap_overlay(r.samples[i], r.heatmaps[i]));
    });
    return paths;
}

cv::Scalar segmentation_colour(int label) {
    static const cv::Scalar palette[] = {
        {60, 60, 255},    // 1 red (epidural)
        {0, 230, 255},    // 2 yellow (intraparenchymal)
        {255, 160, 0},    // 3 blue (intraventricular)
        {255, 80, 255},   // 4 magenta (subarachnoid)
        {80, 255, 80},    // 5 green (subdural)
        {0, 150, 255},    // 6 orange (calcification)
        {255, 255, 0},    // 7 cyan
        {180, 120, 255},  // 8 pink
    };
    if (label <= 0) return {0, 0, 0};
    return palette[static_cast<size_t>(label - 1) % (sizeof palette / sizeof palette[0])];
}

cv::Mat segmentation_overlay(const cv::Mat& pixels, const ImageMeta& meta, const cv::Mat& labels, double alpha) {
    if (pixels.empty() || labels.size() != pixels.size() || labels.type() != CV_8UC1) {
        throw UsageError("segmentation_overlay: the label map must be CV_8UC1 of the image's size");
    }
    cv::Mat gray;
    pixels.convertTo(gray, CV_32F);
    if (gray.channels() == 3 || gray.channels() == 4) {
        cv::cvtColor(gray, gray, gray.channels() == 4 ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGR2GRAY);
    } else if (gray.channels() > 1) {
        cv::extractChannel(gray, gray, 0);  // MR sequences as channels: the first one is shown
    }
    cv::Mat unit;
    if (meta.is_hu) {
        unit = apply_window(gray, window_brain());
    } else if (meta.already_windowed) {
        gray.convertTo(unit, CV_32F, 1.0 / 255.0);
    } else {
        unit = normalize_image(gray, Normalization::UnitRange);
    }
    cv::Mat bgr;
    cv::cvtColor(to_uint8(unit), bgr, cv::COLOR_GRAY2BGR);
    double lo, hi;
    cv::minMaxLoc(labels, &lo, &hi);
    for (int c = 1; c <= static_cast<int>(hi); ++c) {
        const cv::Mat sel = labels == c;
        if (cv::countNonZero(sel) == 0) continue;
        const cv::Scalar colour = segmentation_colour(c);
        cv::Mat tinted;
        cv::addWeighted(bgr, 1.0 - alpha, cv::Mat(bgr.size(), bgr.type(), colour), alpha, 0.0, tinted);
        tinted.copyTo(bgr, sel);
        std::vector<std::vector<cv::Point>> contours;
        cv::findContours(sel, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
        cv::drawContours(bgr, contours, -1, colour, 1, cv::LINE_8);
    }
    return bgr;
}

std::vector<std::pair<std::string, std::string>> segmentation_overlay_pngs(const StudyInput& input,
                                                                           const StudySegmentation& seg,
                                                                           double alpha) {
    std::vector<std::pair<std::string, std::string>> out;
    const auto& labels = seg.result.labels.slices;
    const int n = static_cast<int>(std::min(labels.size(), input.slices.size()));
    const int middle = n / 2;
    for (int k = 0; k < n; ++k) {
        const cv::Mat& l = labels[static_cast<size_t>(k)];
        if (k != middle && cv::countNonZero(l) == 0) continue;
        const DicomSlice& s = input.slices[static_cast<size_t>(k)];
        std::vector<uchar> png;
        cv::imencode(".png", segmentation_overlay(s.pixels, s.meta, l, alpha), png, {cv::IMWRITE_PNG_COMPRESSION, 6});
        out.emplace_back(fmt::format("slice_{:03d}.png", k + 1), std::string(png.begin(), png.end()));
    }
    return out;
}

void write_segmentation_outputs(const fs::path& out, const std::vector<SegmentationOutput>& outputs,
                                const SegPredictor& predictor, const std::vector<std::string>& models) {
    const auto& classes = predictor.class_names();
    fs::create_directories(out);
    json js = {{"model", models.size() == 1 ? json(models.front()) : json(models)},
               {"classes", classes},
               {"bleed_classes", predictor.bleed_classes()},
               {"inputs", json::array()}};
    std::ostringstream csv;
    csv << "input,name,slices,bleed_ml";
    for (size_t c = 1; c < classes.size(); ++c) csv << ',' << csv_escape(classes[c] + "_ml");
    csv << '\n';
    const std::string description = "hemoscan segment " + fs::path(models.front()).filename().string() +
                                    (models.size() > 1 ? " (ensemble)" : "");
    for (const SegmentationOutput& o : outputs) {
        const SegmentationResult& r = o.segmentation.result;
        const std::string mask = o.name + "_seg.nii.gz";
        write_nifti_labels(out / mask, r.labels.slices, r.labels.geometry, description);
        const fs::path overlay_dir = out / (o.name + "_overlay");
        json overlays = json::array();
        for (const auto& [file, bytes] : o.overlays) {
            write_file_atomic(overlay_dir / file, bytes);
            overlays.push_back((fs::path(o.name + "_overlay") / file).generic_string());
        }
        json vols = json::object();
        for (size_t c = 1; c < classes.size(); ++c) vols[classes[c]] = r.volume_ml[c];
        js["inputs"].push_back({{"input", o.input},
                                {"name", o.name},
                                {"mask", mask},
                                {"overlays", overlays},
                                {"size", {o.cols, o.rows, r.labels.depth()}},
                                {"spacing_mm", r.labels.geometry.spacing},
                                {"bleed_volume_ml", r.bleed_volume_ml},
                                {"volume_ml", vols}});
        csv << csv_escape(o.input) << ',' << csv_escape(o.name) << ',' << r.labels.depth() << ','
            << fmt::format("{:.3f}", r.bleed_volume_ml);
        for (size_t c = 1; c < classes.size(); ++c) csv << ',' << fmt::format("{:.3f}", r.volume_ml[c]);
        csv << '\n';
    }
    write_file_atomic(out / "volumes.csv", csv.str());
    write_file_atomic(out / "volumes.json", js.dump(2) + "\n");
}

}  // namespace hemoscan

#pragma once
// Writers of the analysis pipeline's results (infer/study.hpp), shared by the CLI and the server:
// prediction tables, heatmap overlays, segmentation overlays, label maps and volume tables.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hemoscan/infer/study.hpp"

namespace hemoscan {

// {"<label>": {"probability", "decision", "threshold"}, ...} of one prediction.
// `study`: p is a study's result (its thresholds are the model's study_thresholds()).
nlohmann::json prediction_json(const Predictor& predictor, const Prediction& p, double threshold = -1,
                               bool study = false);

// `hemoscan predict`'s tables. JSON: per study {input, kind, result, slices: [{item, result, heatmap}]
// (series, NIfTI), heatmap (one image)}; CSV: input,item,kind,<label>_prob,<label>_pred per image or
// slice, plus a "study" row per series or NIfTI volume. `heatmaps` (per study, per slice; may be empty) are written paths.
nlohmann::json predictions_json(const Predictor& predictor, const std::vector<StudyResult>& results,
                                const std::vector<std::vector<std::string>>& heatmaps, double threshold = -1);
std::string predictions_csv(const Predictor& predictor, const std::vector<StudyResult>& results,
                            double threshold = -1);

// What the model saw (its first channel, or three windows as RGB, rescaled to 8 bits) with a Grad-CAM
// map (CV_32F, sample size) over it. BGR 8-bit.
cv::Mat heatmap_overlay(const Sample& sample, const cv::Mat& cam);

// Writes each slice's heatmap overlay PNG (in parallel): DIR/<stem>.png for a single image,
// DIR/<input name>/<item stem>.png for a series or a set of images. Returns the paths in slice order.
std::vector<std::string> write_heatmap_overlays(const StudyResult& result, const std::filesystem::path& dir);

// Colour (BGR) of a label value in overlays: 1 red, 2 yellow, 3 blue, 4 magenta, 5 green, 6 orange, ...
cv::Scalar segmentation_colour(int label);

// A picture of one slice (the brain window for HU, the image as it is for 8-bit images, min-max
// otherwise) with every labelled region filled in its colour (`alpha`) and outlined. CV_8UC3 BGR.
cv::Mat segmentation_overlay(const cv::Mat& pixels, const ImageMeta& meta, const cv::Mat& labels, double alpha = 0.4);

// Overlay PNGs of the slices with a finding and of the middle slice: {"slice_NNN.png", PNG bytes}.
std::vector<std::pair<std::string, std::string>> segmentation_overlay_pngs(const StudyInput& input,
                                                                           const StudySegmentation& seg,
                                                                           double alpha = 0.4);

// One segmented study as `hemoscan segment` writes it.
struct SegmentationOutput {
    std::string input;  // as given
    std::string name;   // output name (unique among the outputs)
    int rows = 0, cols = 0;
    StudySegmentation segmentation;
    std::vector<std::pair<std::string, std::string>> overlays;  // from segmentation_overlay_pngs
};

// Writes OUT/<name>_seg.nii.gz (label map in the input's geometry), OUT/<name>_overlay/slice_NNN.png,
// OUT/volumes.csv and OUT/volumes.json (mL per class; `model` names the model file(s)).
void write_segmentation_outputs(const std::filesystem::path& out, const std::vector<SegmentationOutput>& outputs,
                                const SegPredictor& predictor, const std::vector<std::string>& models);

}  // namespace hemoscan

#pragma once
// Prediction on what a user points at: image files, DICOM files, DICOM series folders (per-slice
// results and a study result), and folders of images. Shared by the CLI and the server.
#include <filesystem>
#include <string>
#include <vector>

#include "hemoscan/train/predictor.hpp"

namespace hemoscan {

struct InputResult {
    std::string input;                  // as given
    std::string kind;                   // image | dicom | series
    std::vector<std::string> items;     // one per slice/image (file path)
    std::vector<Prediction> per_item;   // one per item
    Prediction overall;                 // study: max probability over items per label; else the item
    std::vector<std::string> heatmaps;  // written overlay PNGs (with a heatmap folder)
};

struct PredictInputsOptions {
    std::filesystem::path heatmap_dir;  // empty: no heatmaps
    double threshold = -1;              // >= 0 overrides the model's thresholds
    int batch = kInferenceBatch;
};

// Expands the inputs (a folder holding DICOM files is a series, one holding images is a set of
// images), predicts, and optionally writes Grad-CAM overlays (of the most probable label).
std::vector<InputResult> predict_inputs(Predictor& predictor, const std::vector<std::filesystem::path>& inputs,
                                        const PredictInputsOptions& options = {});

// The overlay PNG of one preprocessed sample's Grad-CAM for output `index` (BGR, 8-bit).
cv::Mat heatmap_overlay(Predictor& predictor, const Sample& sample, int index);

}  // namespace hemoscan

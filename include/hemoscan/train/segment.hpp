#pragma once
// Segmentation: training (2D models on slices drawn from volumes), the SegPredictor that the CLI
// (`segment`, `evaluate`) and the server share, and evaluation. Free of LibTorch.
#include <array>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hemoscan/data/seg_dataset.hpp"
#include "hemoscan/image.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/train/trainer.hpp"

namespace hemoscan {

// Trains options.model (unet | resunet | attention-unet) on the dataset in options.data into
// options.out: config.json, model.pt (meta: task "segment", class names, bleed classes, windows,
// input size, normalisation), checkpoints + --resume, log.csv (train loss, val Dice per class),
// curves.png, metrics.json (validation, evaluate's shape). Validation is a grouped holdout of whole
// cases (options.val_fraction). Training slices: options.bleed_fraction of each batch from slices
// with foreground. Reuses TrainOptions (epochs, batch, lr, size, window, augment, loss, depth, width
// as base-width multiplier of 32, seed, threads, workers).
TrainResult train_segmenter(const TrainOptions& options, const TrainCallbacks& callbacks = {}, bool resume = false);

// A segmentation of one volume, in the input's own geometry.
struct SegmentationResult {
    LabelVolume labels;                     // same slices/size/geometry as the input volume
    std::vector<std::string> class_names;   // index = label value
    std::vector<double> volume_ml;          // per class (index 0 unused = 0)
    double bleed_volume_ml = 0;             // union of the bleed classes
};

class SegPredictor {
public:
    explicit SegPredictor(const std::filesystem::path& model_path, int threads = 0);
    // An ensemble (as nnU-Net ensembles its configurations): every model segments each slice with its
    // own windows, slice context and flip, and their class probabilities are averaged before the
    // labels are decided. The models must share class names, bleed classes, modality and output
    // geometry (input size, aspect handling, head crop); they may differ in architecture, windows and
    // context. InputError naming the model otherwise; UsageError for an empty list. One path = the
    // single-model predictor.
    explicit SegPredictor(const std::vector<std::filesystem::path>& model_paths, int threads = 0);
    ~SegPredictor();
    SegPredictor(const SegPredictor&) = delete;
    SegPredictor& operator=(const SegPredictor&) = delete;

    const nlohmann::json& meta() const;  // the first model's; an ensemble adds "ensemble": [paths]
    size_t models() const;               // 1, or the ensemble's size
    const std::vector<std::string>& class_names() const;
    const std::vector<int>& bleed_classes() const;

    // Segments every slice (preprocessed as in training; the class probabilities, padding cut off, are
    // resized linearly back to the slice's own size; foreground where P(background) < 0.5, the most
    // probable foreground class there), keeping the volume's geometry, then removes foreground
    // components smaller than min_component_ml(). Thread-safe (one forward at a time). Slices without
    // slice_meta are taken as HU when they hold values <= -900, else as raw values (min-max scaled).
    SegmentationResult segment(const Volume& volume);

    // Post-processing: 3D foreground components below this volume (mL) are dropped. From the model
    // file ("postprocess": {"min_component_ml": ..}, chosen on validation by training), else 0 (off).
    // An ensemble takes the largest of its models' values (the one that lets no speck through that a
    // member's own validation removed); set_min_component_ml overrides it, e.g. with a value chosen
    // on validation cases for the ensemble itself.
    double min_component_ml() const;
    void set_min_component_ml(double ml);  // overrides the model's value (0 = off); UsageError if < 0

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Reads one input of `hemoscan segment` as a volume: a folder (the largest DICOM series in it), a DICOM
// file (a one-slice series), a NIfTI file (.nii, .nii.gz) or a 2D image (one slice; spacing from the
// file where it has one, else 1 mm). InputError naming the path for anything else or a missing path.
Volume read_segment_input(const std::filesystem::path& path, ModalityPolicy policy = ModalityPolicy::CtOnly);

// Colour (BGR) of a label value in overlays: 1 red, 2 yellow, 3 blue, 4 magenta, 5 green, 6 orange, ...
cv::Scalar segmentation_colour(int label);

// A picture of one slice (the brain window for HU, the image as it is for 8-bit images, min-max
// otherwise) with every labelled region filled in its colour (`alpha`) and outlined. CV_8UC3 BGR.
cv::Mat segmentation_overlay(const cv::Mat& pixels, const ImageMeta& meta, const cv::Mat& labels, double alpha = 0.4);

// Runs the model over every case and writes DIR/metrics.json:
//   {"n": cases, "dice": {"<class>": .., "any": ..}, "dice_mean": .. (foreground classes),
//    "iou": {..}, "hd95_mm": {..}, "volume_abs_err_ml": {"<class>": .., "any": ..} (mean over cases),
//    "lesion_sensitivity": .., "cases": [{id, dice_any, volume_ml, volume_true_ml}, ...]}
// plus DIR/cases.csv. Dice is computed per case and averaged (empty-empty cases count as 1); also
// "dice_positive" (mean over the cases whose truth holds the class) and "dice_pooled" (all voxels of
// all cases together). HD95 is averaged over the cases where truth and prediction are both non-empty.
// "dice_any_ci95" holds 95% percentile bootstrap intervals over cases (1000 draws, seed 0) of the three
// Dice summaries of any bleed: {"per_case": [lo, hi], "positive": [..], "pooled": [..], ...}.
// The dataset's class names must equal the model's (InputError otherwise). `progress(done, total)`
// is called after each case.
nlohmann::json evaluate_segmentation(SegPredictor& predictor, const SegDataset& dataset,
                                     const std::filesystem::path& out,
                                     const std::function<void(size_t done, size_t total)>& progress = {});

}  // namespace hemoscan

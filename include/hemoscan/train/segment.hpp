#pragma once
// Segmentation: training (2D models on slices drawn from volumes), the SegPredictor that the CLI
// (`segment`, `evaluate`) and the server share, and evaluation. Free of LibTorch.
#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hemoscan/data/seg_dataset.hpp"
#include "hemoscan/image.hpp"
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
    ~SegPredictor();
    SegPredictor(const SegPredictor&) = delete;
    SegPredictor& operator=(const SegPredictor&) = delete;

    const nlohmann::json& meta() const;
    const std::vector<std::string>& class_names() const;
    const std::vector<int>& bleed_classes() const;

    // Segments every slice (preprocessed as in training, resized back with nearest neighbour to the
    // slice's own size), keeping the volume's geometry. Thread-safe (one forward at a time).
    SegmentationResult segment(const Volume& volume);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Runs the model over every case and writes DIR/metrics.json:
//   {"n": cases, "dice": {"<class>": .., "any": ..}, "dice_mean": .. (foreground classes),
//    "iou": {..}, "hd95_mm": {..}, "volume_abs_err_ml": {"<class>": .., "any": ..} (mean over cases),
//    "lesion_sensitivity": .., "cases": [{id, dice_any, volume_ml, volume_true_ml}, ...]}
// plus DIR/cases.csv. Dice is computed per case and averaged (empty-empty cases count as 1).
nlohmann::json evaluate_segmentation(SegPredictor& predictor, const SegDataset& dataset,
                                     const std::filesystem::path& out);

}  // namespace hemoscan

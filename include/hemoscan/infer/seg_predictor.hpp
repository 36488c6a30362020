#pragma once
// The SegPredictor that the CLI (`segment`, `evaluate`), training validation and the server share: a
// segmentation model file (or an ensemble) -> label maps in the input volume's own geometry, mL per
// class. Free of LibTorch.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hemoscan/image.hpp"
#include "hemoscan/io/nifti.hpp"

namespace hemoscan {

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

}  // namespace hemoscan

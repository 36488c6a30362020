#pragma once
// Self-describing model files: the weights plus a JSON "meta" object (the model config under
// "model", and whatever the trainer adds: labels, input size, windows, normalisation, threshold).
//
// Format (version 1): a LibTorch archive (torch::serialize::OutputArchive, a zip file) holding
//   "hemoscan_format": int, the format version
//   "hemoscan_meta":   string, the meta JSON
//   "weights":         nested archive written by torch::nn::Module::save (parameters and buffers)
// This header stays free of LibTorch.
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

namespace hemoscan {

class ClassifierImpl;
class SegmenterImpl;
class StudyModelImpl;

inline constexpr int kModelFormatVersion = 1;

struct LoadedModel {
    std::shared_ptr<ClassifierImpl> model;  // in eval mode
    nlohmann::json meta;                    // as saved, with meta["model"] = the model config
};

// Writes `model` with `meta` (a JSON object, or null for none) atomically to `path` (temp file +
// rename; parent folders created). meta["model"] is set to the model's config (any value the
// caller put there is replaced). A meta that is not an object -> UsageError.
void save_model(const std::filesystem::path& path, const ClassifierImpl& model,
                const nlohmann::json& meta = nlohmann::json::object());

// Reads a file written by save_model(): rebuilds the model from meta["model"] and loads the
// weights. A missing/empty/corrupt file, a LibTorch file that is not a hemoscan model, a newer
// format version, or weights that do not fit the architecture -> InputError naming the file.
LoadedModel load_model(const std::filesystem::path& path);

// Segmentation models: the same format; meta["task"] = "segment" and meta["model"] = the
// SegModelConfig. Classification files carry meta["task"] = "classify" (older files: no key, which
// means classify). load_model() on a segmentation file, or load_segmenter() on a classifier, ->
// InputError naming the file and saying which command to use.
struct LoadedSegmenter {
    std::shared_ptr<SegmenterImpl> model;  // in eval mode
    nlohmann::json meta;
};
void save_segmenter(const std::filesystem::path& path, const SegmenterImpl& model,
                    const nlohmann::json& meta = nlohmann::json::object());
LoadedSegmenter load_segmenter(const std::filesystem::path& path);

// Study models (issue 26): a classifier file whose classifier is the slice model (stage 1) and whose
// meta["study"] holds the study model's config under "model" (stage 2); the study model's weights are
// a nested archive "study_weights". load_model() reads the slice model of such a file (so evaluate,
// Grad-CAM and every slice-level tool work on it), load_study_model() the study model. meta["study"]
// must be an object (UsageError).
void save_study_model(const std::filesystem::path& path, const ClassifierImpl& slice_model, const nlohmann::json& meta,
                      const StudyModelImpl& study);
// The study model of a file written by save_study_model() (eval mode); InputError naming the file when
// it has none or it does not fit its config.
std::shared_ptr<StudyModelImpl> load_study_model(const std::filesystem::path& path);

// Only the meta JSON of a model file (same errors as load_model), e.g. to choose between the
// classification and segmentation paths by meta["task"].
nlohmann::json read_model_meta(const std::filesystem::path& path);

}  // namespace hemoscan

#pragma once
// The models on a staged upload, and the images the page shows afterwards.
//
// A result's folder (DATA_DIR/results/<id>/, all names chosen here) holds what is needed to render
// any slice again in any window after a restart:
//   volume.nii.gz  the DICOM slices (HU as int16; other modalities float32), or
//   image_<k>.png  the uploaded PNG/JPEG images (grey, 8 or 16 bits as decoded),
//   cam_<k>.png    the Grad-CAM of slice k in the model's input geometry (8-bit),
//   labels.nii.gz  the segmentation label map (with a segmentation model).
// Slices are rendered through preprocess() with the model's crop/resize at a larger size and no
// normalisation, so heatmaps (model geometry) and masks line up with them exactly.
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "hemoscan/io/dicom.hpp"
#include "hemoscan/report/dicom_outputs.hpp"
#include "serve/uploads.hpp"

namespace hemoscan {
class Predictor;
class SegPredictor;
}  // namespace hemoscan

namespace hemoscan::serve {

// Predicts (per slice and for the study), computes Grad-CAM per slice and, with `seg`, segments
// DICOM uploads; writes the result's files into `dir` and returns the result JSON (without
// "created" and "name", which the caller adds). With `dicom` and a DICOM input, also the result as
// DICOM objects (report/dicom_outputs.hpp) in dir/dicom/, listed in the JSON's "dicom" with their
// download URLs. Throws InputError for unreadable inputs.
nlohmann::json analyze(Predictor& predictor, SegPredictor* seg, const StagedUpload& upload, const std::string& id,
                       const std::filesystem::path& dir, const DicomOutputOptions* dicom = nullptr);

// The architecture's name in a model's meta ("" when absent).
std::string model_name(const nlohmann::json& meta);

// Renders PNGs of stored results; keeps the last few volumes in memory (scrolling a series).
class Renderer {
public:
    explicit Renderer(std::filesystem::path results_dir) : results_dir_(std::move(results_dir)) {}

    // Slice k in a window (a preset name or "L,W"; empty: the result's default). 8-bit grey PNG.
    std::string slice_png(const nlohmann::json& result, int k, const std::string& window);
    // Grad-CAM of slice k as RGBA PNG: JET colours, alpha = evidence, so the page can blend it.
    std::string heatmap_png(const nlohmann::json& result, int k);
    // Grad-CAM blended onto slice k (explain/overlay.hpp), RGB PNG.
    std::string overlay_png(const nlohmann::json& result, int k, const std::string& window);
    // Segmentation of slice k as RGBA PNG (one colour per class, transparent background).
    std::string mask_png(const nlohmann::json& result, int k);
    // Drops a deleted result's volumes from the cache.
    void forget(const std::string& id);

private:
    DicomSlice load_slice(const nlohmann::json& result, int k);
    cv::Mat display_gray(const nlohmann::json& result, int k, const std::string& window);
    std::shared_ptr<const Volume> volume(const std::string& id, const std::string& file, bool is_hu);

    std::filesystem::path results_dir_;
    std::mutex mutex_;
    std::list<std::pair<std::string, std::shared_ptr<const Volume>>> cache_;  // most recent first
};

}  // namespace hemoscan::serve

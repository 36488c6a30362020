// SegPredictor: a segmentation model file -> label maps in the input volume's own geometry.
#include <torch/torch.h>

#include <cmath>
#include <mutex>
#include <thread>

#include "hemoscan/error.hpp"
#include "hemoscan/metrics/segmentation.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/train/predictor.hpp"
#include "hemoscan/train/segment.hpp"
#include "train/seg_torch.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

struct SegPredictor::Impl {
    LoadedSegmenter loaded;
    std::vector<std::string> class_names;
    std::vector<int> bleed_classes;
    PreprocessOptions pre;
    bool tta = false;
    int context = 0;  // neighbouring slices on each side as channels (2.5D)
    int batch = 8;
    double min_component_ml = 0;
    std::mutex mutex;  // one forward at a time: modules keep per-call state
};

SegPredictor::SegPredictor(const fs::path& model_path, int threads) : impl_(std::make_unique<Impl>()) {
    torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    impl_->loaded = load_segmenter(model_path);
    const auto& meta = impl_->loaded.meta;
    try {
        impl_->class_names = meta.at("class_names").get<std::vector<std::string>>();
        impl_->bleed_classes = meta.at("bleed_classes").get<std::vector<int>>();
        impl_->pre = preprocess_from_meta(meta);
        impl_->tta = meta.value("tta", std::string("none")) == "hflip";
        impl_->context = meta.value("context", 0);
        if (meta.contains("postprocess")) impl_->min_component_ml = meta["postprocess"].value("min_component_ml", 0.0);
    } catch (const nlohmann::json::exception& e) {
        throw InputError(model_path.string() + ": segmentation model metadata incomplete (" + e.what() + ")");
    }
    if (impl_->context < 0 ||
        impl_->loaded.model->config().in_channels != impl_->pre.channels() * (2 * impl_->context + 1)) {
        throw InputError(model_path.string() +
                         ": the model's input channels do not match its windows and slice context");
    }
    if (impl_->class_names.size() < 2 ||
        static_cast<int>(impl_->class_names.size()) != impl_->loaded.model->config().num_classes) {
        throw InputError(model_path.string() + ": class names do not match the model's outputs");
    }
    impl_->loaded.model->eval();
}

SegPredictor::~SegPredictor() = default;

const nlohmann::json& SegPredictor::meta() const { return impl_->loaded.meta; }
const std::vector<std::string>& SegPredictor::class_names() const { return impl_->class_names; }
const std::vector<int>& SegPredictor::bleed_classes() const { return impl_->bleed_classes; }
double SegPredictor::min_component_ml() const { return impl_->min_component_ml; }

void SegPredictor::set_min_component_ml(double ml) {
    if (!(ml >= 0) || !std::isfinite(ml)) throw UsageError("--min-component-ml must be >= 0 (0 = off)");
    impl_->min_component_ml = ml;
}

SegmentationResult SegPredictor::segment(const Volume& volume) {
    if (volume.slices.empty()) throw InputError("segment: the volume has no slices");
    const std::string name = volume.slice_meta.empty() ? std::string("volume") : volume.slice_meta.front().path;
    for (const cv::Mat& s : volume.slices) {
        if (s.empty() || s.size() != volume.slices.front().size()) {
            throw InputError(name + ": slices of different sizes (or empty) in one volume");
        }
    }
    SegmentationResult result;
    result.class_names = impl_->class_names;
    result.labels.geometry = volume.geometry;
    result.labels.slices.resize(volume.slices.size());
    const int n = volume.depth(), batch = impl_->batch;
    // The whole volume is prepared first: with a slice context, each input holds its neighbours.
    std::vector<seg_detail::PreparedSlice> prepared;
    prepared.reserve(static_cast<size_t>(n));
    for (int k = 0; k < n; ++k) {
        prepared.push_back(seg_detail::prepare_slice(volume.slices[static_cast<size_t>(k)],
                                                     seg_detail::slice_meta(volume, k), impl_->pre));
    }
    seg_detail::add_slice_context(prepared, impl_->context);
    for (int start = 0; start < n; start += batch) {
        const int end = std::min(n, start + batch);
        std::vector<const seg_detail::PreparedSlice*> ptrs;
        for (int k = start; k < end; ++k) ptrs.push_back(&prepared[static_cast<size_t>(k)]);
        torch::Tensor probs;
        {
            std::lock_guard<std::mutex> lock(impl_->mutex);
            c10::InferenceMode guard;
            probs =
                seg_detail::forward_probabilities(*impl_->loaded.model, seg_detail::images_tensor(ptrs), impl_->tta);
        }
        for (int k = start; k < end; ++k) {
            const auto& p = prepared[static_cast<size_t>(k)];
            result.labels.slices[static_cast<size_t>(k)] =
                seg_detail::labels_to_source(seg_detail::probability_planes(probs, k - start), p, impl_->pre.resize);
        }
    }
    const auto& spacing = volume.geometry.spacing;
    if (impl_->min_component_ml > 0) remove_small_components(result.labels.slices, spacing, impl_->min_component_ml);
    result.volume_ml.assign(result.class_names.size(), 0.0);
    for (size_t c = 1; c < result.class_names.size(); ++c) {
        result.volume_ml[c] = volume_ml(class_mask(result.labels.slices, static_cast<int>(c)), spacing);
    }
    result.bleed_volume_ml =
        impl_->bleed_classes.empty()
            ? 0.0
            : volume_ml(class_mask(result.labels.slices, kAnyForeground, impl_->bleed_classes), spacing);
    return result;
}

}  // namespace hemoscan

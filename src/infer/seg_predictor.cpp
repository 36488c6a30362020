// SegPredictor: a segmentation model file (or an ensemble of them) -> label maps in the input volume's own
// geometry.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <thread>

#include "hemoscan/error.hpp"
#include "hemoscan/metrics/segmentation.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/infer/seg_predictor.hpp"
#include "hemoscan/io/load.hpp"
#include "infer/seg_torch.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

// One model of the predictor (an ensemble has several): its weights and how it sees a slice.
struct Member {
    fs::path path;
    LoadedSegmenter loaded;
    PreprocessOptions pre;
    std::string modality;
    bool tta = false;
    int context = 0;        // neighbouring slices on each side as channels (2.5D)
    std::string input_key;  // members with equal keys see a slice the same way and share its preparation
    double min_component_ml = 0;
    std::vector<std::string> class_names;
    std::vector<int> bleed_classes;
};

Member load_member(const fs::path& model_path) {
    Member m;
    m.path = model_path;
    m.loaded = load_segmenter(model_path);
    const auto& meta = m.loaded.meta;
    try {
        m.class_names = meta.at("class_names").get<std::vector<std::string>>();
        m.bleed_classes = meta.at("bleed_classes").get<std::vector<int>>();
        m.pre = preprocess_from_meta(meta);
        m.modality = meta.contains("preprocess") ? meta["preprocess"].value("modality", std::string("ct")) : "ct";
        m.tta = meta.value("tta", std::string("none")) == "hflip";
        m.context = meta.value("context", 0);
        m.input_key =
            meta.value("preprocess", nlohmann::json::object()).dump() + "|context " + std::to_string(m.context);
        if (meta.contains("postprocess")) m.min_component_ml = meta["postprocess"].value("min_component_ml", 0.0);
    } catch (const nlohmann::json::exception& e) {
        throw InputError(model_path.string() + ": segmentation model metadata incomplete (" + e.what() + ")");
    }
    if (m.context < 0 || m.loaded.model->config().in_channels != m.pre.channels() * (2 * m.context + 1)) {
        throw InputError(model_path.string() +
                         ": the model's input channels do not match its windows and slice context");
    }
    if (m.class_names.size() < 2 || static_cast<int>(m.class_names.size()) != m.loaded.model->config().num_classes) {
        throw InputError(model_path.string() + ": class names do not match the model's outputs");
    }
    m.loaded.model->eval();
    return m;
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

// Ensemble members must put their probabilities on the same grid and mean the same classes.
void check_compatible(const Member& first, const Member& m) {
    auto refuse = [&](const std::string& what) {
        throw InputError(m.path.string() + ": cannot join an ensemble with " + first.path.string() + ": " + what);
    };
    if (m.class_names != first.class_names) {
        refuse("other classes (" + joined(m.class_names) + " vs " + joined(first.class_names) + ")");
    }
    if (m.bleed_classes != first.bleed_classes) refuse("other bleed classes");
    if (m.modality != first.modality) refuse("other modality (" + m.modality + " vs " + first.modality + ")");
    const ResizeOptions &a = m.pre.resize, &b = first.pre.resize;
    if (a.width != b.width || a.height != b.height || a.keep_aspect != b.keep_aspect ||
        m.pre.crop_head != first.pre.crop_head) {
        refuse("another input size, aspect handling or head crop");
    }
}

}  // namespace

struct SegPredictor::Impl {
    std::vector<Member> members;
    nlohmann::json meta;
    int batch = 8;
    double min_component_ml = 0;
    std::mutex mutex;  // one forward at a time: modules keep per-call state
};

SegPredictor::SegPredictor(const fs::path& model_path, int threads)
    : SegPredictor(std::vector<fs::path>{model_path}, threads) {}

SegPredictor::SegPredictor(const std::vector<fs::path>& model_paths, int threads) : impl_(std::make_unique<Impl>()) {
    if (model_paths.empty()) throw UsageError("segmentation: no model given");
    torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    for (const fs::path& path : model_paths) {
        impl_->members.push_back(load_member(path));
        if (impl_->members.size() > 1) check_compatible(impl_->members.front(), impl_->members.back());
        impl_->min_component_ml = std::max(impl_->min_component_ml, impl_->members.back().min_component_ml);
    }
    impl_->meta = impl_->members.front().loaded.meta;
    if (model_paths.size() > 1) {
        nlohmann::json paths = nlohmann::json::array();
        for (const fs::path& path : model_paths) paths.push_back(path.string());
        impl_->meta["ensemble"] = paths;
    }
}

SegPredictor::~SegPredictor() = default;

const nlohmann::json& SegPredictor::meta() const { return impl_->meta; }
size_t SegPredictor::models() const { return impl_->members.size(); }
const std::vector<std::string>& SegPredictor::class_names() const { return impl_->members.front().class_names; }
const std::vector<int>& SegPredictor::bleed_classes() const { return impl_->members.front().bleed_classes; }
double SegPredictor::min_component_ml() const { return impl_->min_component_ml; }

void SegPredictor::set_min_component_ml(double ml) {
    if (!(ml >= 0) || !std::isfinite(ml)) throw UsageError("`min_component_ml` must be >= 0 (0 = off)");
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
    result.class_names = class_names();
    result.labels.geometry = volume.geometry;
    result.labels.slices.resize(volume.slices.size());
    const int n = volume.depth(), batch = impl_->batch;
    // The whole volume is prepared first, once per distinct input: with a slice context, each input
    // holds its neighbours, and ensemble members may see the slices through other windows.
    std::vector<std::vector<seg_detail::PreparedSlice>> prepared(impl_->members.size());
    std::vector<size_t> source(impl_->members.size());  // whose prepared slices member m uses
    for (size_t m = 0; m < impl_->members.size(); ++m) {
        const Member& member = impl_->members[m];
        source[m] = m;
        for (size_t j = 0; j < m && source[m] == m; ++j) {
            if (impl_->members[j].input_key == member.input_key) source[m] = j;
        }
        if (source[m] != m) continue;
        prepared[m].reserve(static_cast<size_t>(n));
        for (int k = 0; k < n; ++k) {
            prepared[m].push_back(seg_detail::prepare_slice(volume.slices[static_cast<size_t>(k)],
                                                            slice_meta_of(volume, k), member.pre));
            if (m > 0 && prepared[m].back().box() != prepared[0][static_cast<size_t>(k)].box()) {
                throw InputError(name + ": the ensemble's models cut slice " + std::to_string(k + 1) +
                                 " differently (head crop); use models trained with the same preprocessing");
            }
        }
        seg_detail::add_slice_context(prepared[m], member.context);
    }
    const double weight = 1.0 / static_cast<double>(impl_->members.size());
    for (int start = 0; start < n; start += batch) {
        const int end = std::min(n, start + batch);
        torch::Tensor probs;
        for (size_t m = 0; m < impl_->members.size(); ++m) {
            std::vector<const seg_detail::PreparedSlice*> ptrs;
            for (int k = start; k < end; ++k) ptrs.push_back(&prepared[source[m]][static_cast<size_t>(k)]);
            std::lock_guard<std::mutex> lock(impl_->mutex);
            c10::InferenceMode guard;
            Member& member = impl_->members[m];
            torch::Tensor p =
                seg_detail::forward_probabilities(*member.loaded.model, seg_detail::images_tensor(ptrs), member.tta);
            probs = m == 0 ? p : probs + p;
        }
        if (impl_->members.size() > 1) probs = (probs * weight).contiguous();
        for (int k = start; k < end; ++k) {
            result.labels.slices[static_cast<size_t>(k)] =
                seg_detail::labels_to_source(seg_detail::probability_planes(probs, k - start),
                                             prepared[0][static_cast<size_t>(k)]);
        }
    }
    const auto& spacing = volume.geometry.spacing;
    if (impl_->min_component_ml > 0) remove_small_components(result.labels.slices, spacing, impl_->min_component_ml);
    result.volume_ml.assign(result.class_names.size(), 0.0);
    for (size_t c = 1; c < result.class_names.size(); ++c) {
        result.volume_ml[c] = volume_ml(class_mask(result.labels.slices, static_cast<int>(c)), spacing);
    }
    result.bleed_volume_ml =
        bleed_classes().empty() ? 0.0
                                : volume_ml(class_mask(result.labels.slices, kAnyForeground, bleed_classes()), spacing);
    return result;
}

}  // namespace hemoscan

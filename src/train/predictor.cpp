#include "hemoscan/train/predictor.hpp"

#include <torch/torch.h>

#include <mutex>
#include <thread>

#include "hemoscan/data/batch_tensor.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/explain/grad_cam.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/serialize.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

PreprocessOptions preprocess_from_meta(const nlohmann::json& meta) {
    PreprocessOptions p;
    if (!meta.contains("preprocess")) return p;
    const auto& j = meta["preprocess"];
    p.windows.clear();
    for (const auto& w : j.at("windows")) {
        p.windows.push_back(Window{w.at("name").get<std::string>(), w.at("level").get<double>(), w.at("width").get<double>()});
    }
    int size = j.value("size", 256);
    p.resize = ResizeOptions{size, size, j.value("keep_aspect", false), 0.f};
    p.median_kernel = j.value("median", 0);
    p.normalization = parse_normalization(j.value("normalization", std::string("unit")));
    p.crop_head = j.value("crop_head", false);
    return p;
}

struct Predictor::Impl {
    LoadedModel loaded;
    std::vector<std::string> labels;
    std::vector<double> thresholds;
    bool multiclass = false;
    PreprocessOptions pre;
    ModalityPolicy modality = ModalityPolicy::CtOnly;
    bool tta_hflip = false;  // average with the mirrored image, as the model was validated
    std::mutex mutex;  // one forward at a time per model: modules keep per-call state (autograd, BN mode)
};

Predictor::Predictor(const fs::path& model_path, int threads) : impl_(std::make_unique<Impl>()) {
    torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    impl_->loaded = load_model(model_path);
    const auto& meta = impl_->loaded.meta;
    try {
        impl_->labels = meta.at("labels").get<std::vector<std::string>>();
        impl_->multiclass = meta.value("multiclass", false);
        impl_->thresholds = meta.contains("thresholds") ? meta["thresholds"].get<std::vector<double>>()
                                                        : std::vector<double>(impl_->labels.size(), 0.5);
        impl_->pre = preprocess_from_meta(meta);
        impl_->tta_hflip = meta.value("tta", std::string("none")) == "hflip";
        std::string m = meta.contains("preprocess") ? meta["preprocess"].value("modality", std::string("ct")) : "ct";
        impl_->modality = parse_modality_policy(m);
    } catch (const nlohmann::json::exception& e) {
        throw InputError(model_path.string() + ": model metadata incomplete (" + e.what() + ")");
    }
    if (impl_->thresholds.size() != impl_->labels.size()) {
        throw InputError(model_path.string() + ": thresholds do not match the labels");
    }
    impl_->loaded.model->eval();
}

Predictor::~Predictor() = default;

const nlohmann::json& Predictor::meta() const { return impl_->loaded.meta; }
const std::vector<std::string>& Predictor::labels() const { return impl_->labels; }
const std::vector<double>& Predictor::thresholds() const { return impl_->thresholds; }
bool Predictor::multiclass() const { return impl_->multiclass; }
const PreprocessOptions& Predictor::preprocess_options() const { return impl_->pre; }
ModalityPolicy Predictor::modality() const { return impl_->modality; }

std::vector<int> Predictor::decide(const std::vector<double>& p, double threshold_override) const {
    std::vector<int> d(p.size(), 0);
    if (impl_->multiclass) {
        size_t best = 0;
        for (size_t i = 1; i < p.size(); ++i) if (p[i] > p[best]) best = i;
        if (!p.empty()) d[best] = 1;
        return d;
    }
    for (size_t i = 0; i < p.size(); ++i) {
        double t = threshold_override >= 0 ? threshold_override : impl_->thresholds[i];
        d[i] = p[i] >= t ? 1 : 0;
    }
    return d;
}

namespace {
torch::Tensor to_chw(const cv::Mat& image) {
    cv::Mat img = image.isContinuous() ? image : image.clone();
    const int c = img.channels();
    // HWC float -> CHW tensor (clone: the Mat's memory is not ours to keep).
    return torch::from_blob(img.data, {img.rows, img.cols, c}, torch::kFloat32).permute({2, 0, 1}).clone();
}
}  // namespace

namespace {
std::vector<Prediction> rows_of(const torch::Tensor& probs_in, const Predictor& p) {
    auto probs = probs_in.contiguous();
    auto acc = probs.accessor<float, 2>();
    std::vector<Prediction> out;
    for (long r = 0; r < probs.size(0); ++r) {
        Prediction pr;
        for (long l = 0; l < probs.size(1); ++l) pr.probabilities.push_back(acc[r][l]);
        pr.decisions = p.decide(pr.probabilities);
        out.push_back(std::move(pr));
    }
    return out;
}
}  // namespace

namespace {
torch::Tensor forward_probs(ClassifierImpl& model, const torch::Tensor& x, bool multiclass, bool tta) {
    auto p = probabilities(model.forward(x), multiclass);
    if (tta) p = 0.5 * (p + probabilities(model.forward(x.flip({3})), multiclass));
    return p;
}
}  // namespace

std::vector<Prediction> Predictor::predict_batch(Batch&& batch) {
    BatchTensors t = to_tensors(std::move(batch));
    std::lock_guard<std::mutex> lock(impl_->mutex);
    c10::InferenceMode guard;
    return rows_of(forward_probs(*impl_->loaded.model, t.images, impl_->multiclass, impl_->tta_hflip), *this);
}

std::vector<Prediction> Predictor::predict_samples(const std::vector<Sample>& samples, int batch_size) {
    std::vector<Prediction> out;
    out.reserve(samples.size());
    std::lock_guard<std::mutex> lock(impl_->mutex);
    c10::InferenceMode guard;
    for (size_t start = 0; start < samples.size(); start += static_cast<size_t>(std::max(1, batch_size))) {
        size_t end = std::min(samples.size(), start + static_cast<size_t>(std::max(1, batch_size)));
        std::vector<torch::Tensor> items;
        for (size_t i = start; i < end; ++i) items.push_back(to_chw(samples[i].image));
        auto rows = rows_of(forward_probs(*impl_->loaded.model, torch::stack(items), impl_->multiclass, impl_->tta_hflip),
                            *this);
        std::move(rows.begin(), rows.end(), std::back_inserter(out));
    }
    return out;
}

Prediction Predictor::predict(const DicomSlice& slice) {
    return predict_samples({preprocess(slice, impl_->pre)}).front();
}

cv::Mat Predictor::heatmap(const Sample& sample, int index) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto input = to_chw(sample.image).unsqueeze(0);
    return grad_cam(*impl_->loaded.model, input, index);
}

}  // namespace hemoscan

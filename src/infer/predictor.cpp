#include "hemoscan/infer/predictor.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "hemoscan/data/batch_tensor.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/explain/grad_cam.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/cnn.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/models/study_model.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

PreprocessOptions preprocess_from_meta(const nlohmann::json& meta) {
    return preprocess_from_json(meta.contains("preprocess") ? meta["preprocess"] : nlohmann::json());
}

struct Predictor::Impl {
    LoadedModel loaded;
    std::vector<std::string> labels;
    std::vector<double> thresholds, slice_thresholds, study_thresholds;
    std::shared_ptr<StudyModelImpl> study;  // stage 2, when the file has one
    bool multiclass = false;
    PreprocessOptions pre;
    ModalityPolicy modality = ModalityPolicy::CtOnly;
    bool tta_hflip = false;  // average with the mirrored image, as the model was validated
    int context = 0;
    std::mutex mutex;  // one forward at a time per model: modules keep per-call state (autograd, BN mode)
};

namespace {
// Done once per loaded model, for inference only: BatchNorm folded into the convs (cnn) and 4-D
// weights in channels-last layout, so that oneDNN runs NHWC convolutions on the NHWC batches of
// batch_of() without reordering every activation to its blocked layout and back. Measured with
// bench/run.sh (docs/results.md, "Speed: hemoscan vs Python PyTorch").
void prepare_for_inference(ClassifierImpl& model) {
    model.eval();
    torch::NoGradGuard no_grad;
    if (auto* cnn = dynamic_cast<CnnImpl*>(&model)) cnn->fold_batch_norm();
    for (auto& p : model.parameters()) {
        if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
    }
}
}  // namespace

Predictor::Predictor(const fs::path& model_path, int threads) : impl_(std::make_unique<Impl>()) {
    const auto t0 = std::chrono::steady_clock::now();
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
        impl_->context = meta.value("context", 0);
        impl_->slice_thresholds = impl_->study_thresholds = impl_->thresholds;
        if (meta.contains("study")) {
            const auto& study = meta["study"];
            impl_->slice_thresholds = study.at("slice_thresholds").get<std::vector<double>>();
            if (study.contains("study_thresholds")) {
                impl_->study_thresholds = study["study_thresholds"].get<std::vector<double>>();
            }
        }
        std::string m = meta.contains("preprocess") ? meta["preprocess"].value("modality", std::string("ct")) : "ct";
        impl_->modality = parse_modality_policy(m);
    } catch (const nlohmann::json::exception& e) {
        throw InputError(model_path.string() + ": model metadata incomplete (" + e.what() + ")");
    }
    if (impl_->thresholds.size() != impl_->labels.size() || impl_->slice_thresholds.size() != impl_->labels.size() ||
        impl_->study_thresholds.size() != impl_->labels.size()) {
        throw InputError(model_path.string() + ": thresholds do not match the labels");
    }
    if (meta.contains("study")) {
        impl_->study = load_study_model(model_path);
        if (impl_->study->config().num_labels != static_cast<int>(impl_->labels.size()) || impl_->multiclass) {
            throw InputError(model_path.string() + ": the study model does not match the slice model's labels");
        }
    }
    prepare_for_inference(*impl_->loaded.model);
    logger().debug("{}: loaded in {:.3f} s", model_path.string(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

Predictor::~Predictor() = default;

const nlohmann::json& Predictor::meta() const { return impl_->loaded.meta; }
const std::vector<std::string>& Predictor::labels() const { return impl_->labels; }
const std::vector<double>& Predictor::thresholds() const { return impl_->thresholds; }
const std::vector<double>& Predictor::slice_thresholds() const { return impl_->slice_thresholds; }
const std::vector<double>& Predictor::study_thresholds() const { return impl_->study_thresholds; }
bool Predictor::has_study_model() const { return impl_->study != nullptr; }
bool Predictor::multiclass() const { return impl_->multiclass; }
const PreprocessOptions& Predictor::preprocess_options() const { return impl_->pre; }
ModalityPolicy Predictor::modality() const { return impl_->modality; }
int Predictor::context() const { return impl_->context; }

namespace {
std::vector<int> decide_with(const std::vector<double>& p, const std::vector<double>& thresholds, bool multiclass,
                             double threshold_override) {
    std::vector<int> d(p.size(), 0);
    if (multiclass) {
        size_t best = 0;
        for (size_t i = 1; i < p.size(); ++i) if (p[i] > p[best]) best = i;
        if (!p.empty()) d[best] = 1;
        return d;
    }
    for (size_t i = 0; i < p.size(); ++i) {
        double t = threshold_override >= 0 ? threshold_override : thresholds[i];
        d[i] = p[i] >= t ? 1 : 0;
    }
    return d;
}
}  // namespace

std::vector<int> Predictor::decide(const std::vector<double>& p, double threshold_override) const {
    return decide_with(p, impl_->thresholds, impl_->multiclass, threshold_override);
}

StudyPrediction Predictor::predict_study(const std::vector<Prediction>& slices, double threshold_override) {
    if (!impl_->study) throw UsageError("predict_study: this model has no study model");
    std::vector<std::vector<double>> probs;
    for (const auto& s : slices) probs.push_back(s.probabilities);
    StudyPrediction out;
    torch::Tensor slice_p, study_p;
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        c10::InferenceMode guard;
        const torch::Tensor x = study_features(probs).unsqueeze(0);
        auto [slice_logits, study_logits] = impl_->study->forward(x, torch::ones({1, x.size(1)}));
        slice_p = torch::sigmoid(slice_logits[0]).contiguous();
        study_p = torch::sigmoid(study_logits[0]).contiguous();
    }
    auto row = [&](const float* v, int64_t n, const std::vector<double>& thresholds) {
        Prediction p;
        p.probabilities.assign(v, v + n);
        p.decisions = decide_with(p.probabilities, thresholds, false, threshold_override);
        return p;
    };
    const int64_t L = slice_p.size(1);
    for (int64_t t = 0; t < slice_p.size(0); ++t) {
        out.slices.push_back(row(slice_p.data_ptr<float>() + t * L, L, impl_->thresholds));
    }
    out.study = row(study_p.data_ptr<float>(), L, impl_->study_thresholds);
    return out;
}

namespace {
// Samples [start, end) as one N x C x H x W float batch in channels-last layout. That layout is HWC
// per image, as the samples' cv::Mat, so each image is one copy (no permute, no stack).
torch::Tensor batch_of(const std::vector<Sample>& samples, size_t start, size_t end) {
    const cv::Mat& first = samples.at(start).image;
    const int c = first.channels(), h = first.rows, w = first.cols;
    const auto options = torch::TensorOptions().dtype(torch::kFloat32).memory_format(torch::MemoryFormat::ChannelsLast);
    torch::Tensor x = torch::empty({static_cast<int64_t>(end - start), c, h, w}, options);
    float* dst = x.data_ptr<float>();
    for (size_t i = start; i < end; ++i) {
        const cv::Mat& image = samples[i].image;
        if (image.empty() || image.rows != h || image.cols != w || image.channels() != c) {
            throw UsageError("predict: the samples of one batch differ in size or channels (" +
                             (samples[i].meta.path.empty() ? samples[i].id : samples[i].meta.path) + ")");
        }
        cv::Mat out(h, w, CV_32FC(c), dst + (i - start) * size_t(c) * h * w);
        image.convertTo(out, CV_32F);  // writes into the tensor (same size and type: no reallocation)
    }
    return x;
}
}  // namespace

namespace {
// Rows of slice-model probabilities, decided by the slice model's thresholds.
std::vector<Prediction> rows_of(const torch::Tensor& probs_in, const Predictor& p) {
    auto probs = probs_in.contiguous();
    auto acc = probs.accessor<float, 2>();
    std::vector<Prediction> out;
    for (long r = 0; r < probs.size(0); ++r) {
        Prediction pr;
        for (long l = 0; l < probs.size(1); ++l) pr.probabilities.push_back(acc[r][l]);
        pr.decisions = decide_with(pr.probabilities, p.slice_thresholds(), p.multiclass(), -1);
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
        auto rows = rows_of(forward_probs(*impl_->loaded.model, batch_of(samples, start, end), impl_->multiclass,
                                          impl_->tta_hflip),
                            *this);
        std::move(rows.begin(), rows.end(), std::back_inserter(out));
    }
    return out;
}

std::vector<Prediction> Predictor::predict_samples(const std::vector<Sample>& samples, int batch_size,
                                                   std::vector<cv::Mat>& heatmaps) {
    std::vector<Prediction> out;
    out.reserve(samples.size());
    heatmaps.clear();
    std::lock_guard<std::mutex> lock(impl_->mutex);
    ClassifierImpl& model = *impl_->loaded.model;
    const size_t step = static_cast<size_t>(std::max(1, batch_size));
    for (size_t start = 0; start < samples.size(); start += step) {
        const size_t end = std::min(samples.size(), start + step);
        const torch::Tensor x = batch_of(samples, start, end);
        // As grad_cam(), for the whole batch: features without a graph, the head with one.
        torch::Tensor features, logits, probs;
        {
            torch::NoGradGuard no_grad;
            features = model.features(x);
        }
        torch::AutoGradMode enable_grad(true);
        features = features.detach().requires_grad_(true);
        logits = model.head(features);
        {
            torch::NoGradGuard no_grad;
            probs = probabilities(logits.detach(), impl_->multiclass);
            if (impl_->tta_hflip) probs = 0.5 * (probs + probabilities(model.forward(x.flip({3})), impl_->multiclass));
        }
        auto rows = rows_of(probs, *this);
        // The most probable output of each sample (the first on ties, as std::max_element).
        std::vector<int64_t> top;
        for (const auto& r : rows) {
            top.push_back(std::max_element(r.probabilities.begin(), r.probabilities.end()) - r.probabilities.begin());
        }
        const torch::Tensor picked = logits.gather(1, torch::tensor(top).unsqueeze(1)).sum();
        const torch::Tensor grad = torch::autograd::grad({picked}, {features})[0];
        torch::Tensor cams;
        {
            torch::NoGradGuard no_grad;
            cams = torch::relu((grad.mean({2, 3}, /*keepdim=*/true) * features.detach()).sum(1)).contiguous();
        }
        for (size_t i = start; i < end; ++i) {
            heatmaps.push_back(cam_to_map(cams[static_cast<int64_t>(i - start)], samples[i].image.rows,
                                          samples[i].image.cols));
        }
        std::move(rows.begin(), rows.end(), std::back_inserter(out));
    }
    return out;
}

Prediction Predictor::predict(const DicomSlice& slice) {
    return predict_samples({preprocess(slice, impl_->pre)}).front();
}

cv::Mat Predictor::heatmap(const Sample& sample, int index) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const std::vector<Sample> one{sample};
    return grad_cam(*impl_->loaded.model, batch_of(one, 0, 1), index);
}

}  // namespace hemoscan

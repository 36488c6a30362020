#pragma once
// The one Predictor that the CLI (evaluate, predict) and the server share: loads a self-describing
// model.pt and turns images into probabilities, decisions and heatmaps. Free of LibTorch.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hemoscan/data/loader.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

namespace hemoscan {

struct Prediction {
    std::vector<double> probabilities;  // per label (sigmoid) or class (softmax)
    std::vector<int> decisions;         // multi-label: prob >= threshold; multi-class: one-hot argmax
};

// Slices per forward pass when predicting. Small batches keep the activations in memory the allocator
// already holds: a 32-slice series end to end took 3.1 s at 32, 2.9 s at 8 (page faults 230k -> 77k;
// docs/notebook/results-log-2026-11.md, issue 7).
constexpr int kInferenceBatch = 8;

// What a study model (`train --task study`, stage 2) makes of a study's slices.
struct StudyPrediction {
    std::vector<Prediction> slices;  // per slice, in the study's order
    Prediction study;                // per label: the highest slice (the model's study output)
};

class Predictor {
public:
    // threads: intra-op threads (0 = all cores). Throws InputError for a missing/corrupt model file.
    explicit Predictor(const std::filesystem::path& model_path, int threads = 0);
    ~Predictor();
    Predictor(const Predictor&) = delete;
    Predictor& operator=(const Predictor&) = delete;

    const nlohmann::json& meta() const;
    const std::vector<std::string>& labels() const;
    // The thresholds of the final outputs: the study model's when the file has one, else the slice model's.
    const std::vector<double>& thresholds() const;
    // The slice model's own thresholds, which predict_samples() and predict_batch() decide with.
    const std::vector<double>& slice_thresholds() const;
    // The thresholds of a study's result: a study model's own (chosen on validation studies), else thresholds().
    const std::vector<double>& study_thresholds() const;
    bool multiclass() const;
    const PreprocessOptions& preprocess_options() const;
    ModalityPolicy modality() const;
    // Slices on each side that the model sees beside each slice (2.5D; 0 = the slice alone): inputs
    // are stack_slice_context() of a study's preprocessed slices.
    int context() const;

    // Preprocessed samples (from preprocess() with preprocess_options()) -> predictions, batched.
    std::vector<Prediction> predict_samples(const std::vector<Sample>& samples, int batch_size = kInferenceBatch);
    // The same, plus in `heatmaps` the Grad-CAM map of each sample's most probable output (what
    // heatmap() returns for it): each batch's features serve both, instead of one more forward per
    // sample.
    std::vector<Prediction> predict_samples(const std::vector<Sample>& samples, int batch_size,
                                            std::vector<cv::Mat>& heatmaps);
    // A loader batch (already preprocessed with preprocess_options()) -> one prediction per sample.
    std::vector<Prediction> predict_batch(Batch&& batch);
    Prediction predict(const DicomSlice& slice);
    // Grad-CAM of output `index` for one preprocessed sample: CV_32F map in [0, 1], sample size.
    cv::Mat heatmap(const Sample& sample, int index);
    // A model file with a study model (stage 2 over the slice model's outputs, issue 26).
    bool has_study_model() const;
    // The slice model's predictions of one study's slices, in slice order -> the study model's per-slice
    // and study predictions, decided by thresholds() and study_thresholds() (or `threshold_override` when >= 0). Without a
    // study model: UsageError.
    StudyPrediction predict_study(const std::vector<Prediction>& slices, double threshold_override = -1);
    // Decisions for probabilities with the model's thresholds (or `threshold_override` when >= 0).
    std::vector<int> decide(const std::vector<double>& probabilities, double threshold_override = -1) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Builds PreprocessOptions from a model's meta (preprocess_from_json of what the trainer stored).
PreprocessOptions preprocess_from_meta(const nlohmann::json& meta);

}  // namespace hemoscan

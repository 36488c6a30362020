#pragma once
// The study model (stage 2 of the RSNA 2019 winners' recipe, issue 26): a sequence model over the
// ordered slices of a study. Its input is one feature vector per slice (what a slice model gives:
// pooled features and/or logits); a 1D convolution mixes neighbouring slices, a bidirectional GRU
// reads the whole study, and a linear layer gives per-slice logits; the study's logits are the
// maximum over its slices (a bleed on one slice is a bleed of the study).
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace hemoscan {

struct StudyModelConfig {
    int in_features = 0;  // per-slice input features
    int num_labels = 0;
    int hidden = 64;      // channels of the convolution, GRU units per direction
    int kernel = 3;       // slices the convolution sees (odd)
    double dropout = 0.1;
};

class StudyModelImpl : public torch::nn::Module {
public:
    explicit StudyModelImpl(const StudyModelConfig& config);

    // x: B x T x F, the slices of B studies in order, padded to T; mask: B x T (1 = a slice, 0 =
    // padding; a study has at least one slice). Returns {B x T x L slice logits, B x L study logits};
    // padding changes neither the valid slices' logits nor the study's.
    std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x, const torch::Tensor& mask);
    const StudyModelConfig& config() const { return config_; }

private:
    StudyModelConfig config_;
    torch::nn::Conv1d conv_{nullptr};
    torch::nn::GRU gru_{nullptr};
    torch::nn::Dropout dropout_{nullptr};
    torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(StudyModel);

nlohmann::json study_model_config_to_json(const StudyModelConfig& c);
StudyModelConfig study_model_config_from_json(const nlohmann::json& j);  // UsageError for a bad config

// The study model's input for one study: per slice, the slice model's probabilities as log-odds,
// clipped to +-8 and divided by 4 (T x L). Probabilities rather than pooled features keep stage 2
// independent of the slice model's architecture, and every slice model gives them (TTA included).
torch::Tensor study_features(const std::vector<std::vector<double>>& slice_probs);

// Studies of different lengths as one padded batch: x B x T x F, mask B x T, and, when `targets` is
// given (T_i x L each), y B x T x L (padding 0).
struct StudyBatch {
    torch::Tensor x, mask, y;
};
StudyBatch pad_studies(const std::vector<torch::Tensor>& features, const std::vector<torch::Tensor>& targets = {});

}  // namespace hemoscan

#include "hemoscan/models/study_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "hemoscan/error.hpp"

namespace hemoscan {

StudyModelImpl::StudyModelImpl(const StudyModelConfig& config) : config_(config) {
    if (config.in_features < 1 || config.num_labels < 1 || config.hidden < 1) {
        throw UsageError("study model: features, labels and hidden units must be >= 1");
    }
    if (config.kernel < 1 || config.kernel % 2 == 0) throw UsageError("study model: the kernel must be odd");
    conv_ = register_module("conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(config.in_features, config.hidden,
                                                                               config.kernel)
                                                          .padding(config.kernel / 2)));
    gru_ = register_module(
        "gru", torch::nn::GRU(torch::nn::GRUOptions(config.hidden, config.hidden).batch_first(true).bidirectional(true)));
    dropout_ = register_module("dropout", torch::nn::Dropout(config.dropout));
    head_ = register_module("head", torch::nn::Linear(2 * config.hidden, config.num_labels));
}

std::pair<torch::Tensor, torch::Tensor> StudyModelImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
    if (x.dim() != 3 || x.size(2) != config_.in_features || mask.dim() != 2 || mask.size(0) != x.size(0) ||
        mask.size(1) != x.size(1)) {
        throw UsageError("study model: expected B x T x " + std::to_string(config_.in_features) +
                         " slices and a B x T mask");
    }
    const torch::Tensor valid = mask.to(torch::kBool);
    const torch::Tensor m = valid.unsqueeze(2).to(x.dtype());
    // Padding is zeroed before and after the convolution, so that it never leaks into a study's slices;
    // the GRU reads each study only up to its length (packed sequences).
    torch::Tensor h = torch::relu(conv_->forward((x * m).transpose(1, 2))).transpose(1, 2) * m;
    const torch::Tensor lengths = valid.sum(1).to(torch::kCPU).to(torch::kInt64);
    auto packed = torch::nn::utils::rnn::pack_padded_sequence(h, lengths, /*batch_first=*/true,
                                                              /*enforce_sorted=*/false);
    auto out = std::get<0>(gru_->forward_with_packed_input(packed));
    h = std::get<0>(torch::nn::utils::rnn::pad_packed_sequence(out, /*batch_first=*/true, 0.0, x.size(1)));
    const torch::Tensor slices = head_->forward(dropout_->forward(h));
    const torch::Tensor study =
        std::get<0>(slices.masked_fill(valid.logical_not().unsqueeze(2), -std::numeric_limits<float>::infinity()).max(1));
    return {slices, study};
}

nlohmann::json study_model_config_to_json(const StudyModelConfig& c) {
    return {{"name", "study-gru"},
            {"in_features", c.in_features},
            {"num_labels", c.num_labels},
            {"hidden", c.hidden},
            {"kernel", c.kernel},
            {"dropout", c.dropout}};
}

StudyModelConfig study_model_config_from_json(const nlohmann::json& j) {
    if (!j.is_object() || j.value("name", std::string()) != "study-gru") {
        throw UsageError("study model: unknown config " + j.dump());
    }
    StudyModelConfig c;
    c.in_features = j.at("in_features").get<int>();
    c.num_labels = j.at("num_labels").get<int>();
    c.hidden = j.at("hidden").get<int>();
    c.kernel = j.at("kernel").get<int>();
    c.dropout = j.at("dropout").get<double>();
    return c;
}

torch::Tensor study_features(const std::vector<std::vector<double>>& slice_probs) {
    if (slice_probs.empty()) throw UsageError("study model: a study without slices");
    const size_t L = slice_probs.front().size();
    torch::Tensor x = torch::empty({static_cast<int64_t>(slice_probs.size()), static_cast<int64_t>(L)});
    auto a = x.accessor<float, 2>();
    for (size_t t = 0; t < slice_probs.size(); ++t) {
        if (slice_probs[t].size() != L) throw UsageError("study model: slices with different numbers of labels");
        for (size_t l = 0; l < L; ++l) {
            const double p = std::clamp(slice_probs[t][l], 1e-6, 1.0 - 1e-6);
            a[static_cast<int64_t>(t)][static_cast<int64_t>(l)] =
                static_cast<float>(std::clamp(std::log(p / (1.0 - p)), -8.0, 8.0) / 4.0);
        }
    }
    return x;
}

StudyBatch pad_studies(const std::vector<torch::Tensor>& features, const std::vector<torch::Tensor>& targets) {
    if (features.empty()) throw UsageError("study model: an empty batch");
    if (!targets.empty() && targets.size() != features.size()) throw UsageError("study model: targets do not match");
    int64_t T = 0;
    for (const auto& f : features) T = std::max(T, f.size(0));
    const int64_t B = static_cast<int64_t>(features.size()), F = features.front().size(1);
    StudyBatch b;
    b.x = torch::zeros({B, T, F});
    b.mask = torch::zeros({B, T});
    if (!targets.empty()) b.y = torch::zeros({B, T, targets.front().size(1)});
    for (int64_t i = 0; i < B; ++i) {
        const int64_t n = features[static_cast<size_t>(i)].size(0);
        b.x[i].slice(0, 0, n).copy_(features[static_cast<size_t>(i)]);
        b.mask[i].slice(0, 0, n).fill_(1);
        if (!targets.empty()) b.y[i].slice(0, 0, n).copy_(targets[static_cast<size_t>(i)]);
    }
    return b;
}

}  // namespace hemoscan

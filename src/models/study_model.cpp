#include "hemoscan/models/study_model.hpp"

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

}  // namespace hemoscan

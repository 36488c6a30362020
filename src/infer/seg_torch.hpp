#pragma once
// LibTorch side of segmentation shared by training (validation) and SegPredictor. Private to src/train.
#include <torch/torch.h>

#include <vector>

#include "hemoscan/models/segmenter.hpp"
#include "infer/seg_detail.hpp"

namespace hemoscan::seg_detail {

// N x C x H x W float tensor of the prepared slices' images (HWC float Mats).
inline torch::Tensor images_tensor(const std::vector<const PreparedSlice*>& slices) {
    const cv::Mat& first = slices.front()->sample.image;
    const int64_t n = static_cast<int64_t>(slices.size()), c = first.channels(), h = first.rows, w = first.cols;
    torch::Tensor x = torch::empty({n, c, h, w}, torch::kFloat32);
    float* dst = x.data_ptr<float>();
    const size_t plane = static_cast<size_t>(h * w);
    for (size_t i = 0; i < slices.size(); ++i) {
        const cv::Mat& img = slices[i]->sample.image;
        std::vector<cv::Mat> planes;
        for (int64_t k = 0; k < c; ++k) {
            planes.emplace_back(static_cast<int>(h), static_cast<int>(w), CV_32FC1, dst + (i * c + k) * plane);
        }
        if (c == 1) {
            img.copyTo(planes[0]);
        } else {
            cv::split(img, planes.data());
        }
    }
    return x;
}

// N x H x W int64 tensor of the prepared slices' masks (at model size).
inline torch::Tensor masks_tensor(const std::vector<const PreparedSlice*>& slices) {
    const cv::Mat& first = slices.front()->sample.mask;
    const int64_t n = static_cast<int64_t>(slices.size()), h = first.rows, w = first.cols;
    torch::Tensor y = torch::empty({n, h, w}, torch::kInt64);
    int64_t* dst = y.data_ptr<int64_t>();
    for (const PreparedSlice* s : slices) {
        const cv::Mat& m = s->sample.mask;
        for (int r = 0; r < m.rows; ++r) {
            const uchar* row = m.ptr<uchar>(r);
            for (int c = 0; c < m.cols; ++c) *dst++ = row[c];
        }
    }
    return y;
}

// Softmax class probabilities (N x K x H x W); with `tta`, averaged with the prediction on the mirrored
// image (mirrored back).
inline torch::Tensor forward_probabilities(SegmenterImpl& model, const torch::Tensor& x, bool tta,
                                           torch::Tensor* logits = nullptr) {
    torch::Tensor out = model.forward(x);
    if (logits) *logits = out;
    torch::Tensor p = torch::softmax(out, 1);
    if (tta) p = 0.5 * (p + torch::softmax(model.forward(x.flip({3})), 1).flip({3}));
    return p.contiguous();
}

// The K probability planes of sample i of a contiguous N x K x H x W tensor (views, no copy).
inline std::vector<cv::Mat> probability_planes(const torch::Tensor& probs, int64_t i) {
    const int64_t k = probs.size(1), h = probs.size(2), w = probs.size(3);
    float* base = probs.data_ptr<float>() + i * k * h * w;
    std::vector<cv::Mat> planes;
    for (int64_t c = 0; c < k; ++c) planes.emplace_back(static_cast<int>(h), static_cast<int>(w), CV_32FC1, base + c * h * w);
    return planes;
}

}  // namespace hemoscan::seg_detail

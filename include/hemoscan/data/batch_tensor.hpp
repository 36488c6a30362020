#pragma once
// Batch -> LibTorch tensors. Kept apart from loader.hpp so that only the files that need tensors
// pay for the LibTorch headers.
#include <torch/types.h>

#include <memory>
#include <utility>
#include <vector>

#include "hemoscan/data/loader.hpp"

namespace hemoscan {

struct BatchTensors {
    torch::Tensor images;  // float32, N x C x H x W
    torch::Tensor labels;  // float32, N x L
    torch::Tensor masks;   // int64, N x H x W; undefined (masks.defined() == false) when the batch has none
    std::vector<size_t> indices;  // dataset item index of each sample
};

namespace batch_tensor_detail {

// A CPU tensor that takes over the vector's memory (no copy): the vector lives until the last
// tensor sharing the storage is gone.
template <typename T>
torch::Tensor adopt(std::vector<T>&& data, std::vector<int64_t> sizes, torch::Dtype dtype) {
    if (data.empty()) return torch::empty(sizes, torch::TensorOptions().dtype(dtype));
    auto owner = std::make_unique<std::vector<T>>(std::move(data));
    void* ptr = owner->data();
    torch::Tensor t = torch::from_blob(ptr, sizes, [keep = owner.get()](void*) { delete keep; },
                                       torch::TensorOptions().dtype(dtype));
    owner.release();  // now owned by the tensor's deleter
    return t;
}

inline void check_sizes(const Batch& b) {
    const size_t n = static_cast<size_t>(b.n), chw = size_t(b.c) * b.h * b.w, hw = size_t(b.h) * b.w;
    TORCH_CHECK(b.images.size() == n * chw, "Batch: images hold ", b.images.size(), " values, expected ", n * chw);
    TORCH_CHECK(b.labels.size() == n * size_t(b.num_labels), "Batch: labels hold ", b.labels.size(),
                " values, expected ", n * size_t(b.num_labels));
    TORCH_CHECK(b.masks.empty() || b.masks.size() == n * hw, "Batch: masks hold ", b.masks.size(),
                " values, expected ", n * hw);
}

}  // namespace batch_tensor_detail

// Moves the batch's buffers into tensors: images and labels without any copy (the tensors own the
// memory); masks are widened to int64 (one pass). `batch` is left empty.
inline BatchTensors to_tensors(Batch&& batch) {
    using namespace batch_tensor_detail;
    check_sizes(batch);
    const int64_t n = batch.n, c = batch.c, h = batch.h, w = batch.w, l = batch.num_labels;
    BatchTensors out;
    out.images = adopt(std::move(batch.images), {n, c, h, w}, torch::kFloat32);
    out.labels = adopt(std::move(batch.labels), {n, l}, torch::kFloat32);
    if (!batch.masks.empty()) {
        out.masks = torch::from_blob(batch.masks.data(), {n, h, w}, torch::TensorOptions().dtype(torch::kUInt8))
                        .to(torch::kInt64);
    }
    out.indices = std::move(batch.indices);
    batch = Batch{};
    return out;
}

// Copies the batch into tensors; `batch` stays as it is.
inline BatchTensors to_tensors(const Batch& batch) {
    Batch copy = batch;
    return to_tensors(std::move(copy));
}

}  // namespace hemoscan

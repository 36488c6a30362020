#pragma once
// A parallel data loader: worker threads decode, preprocess and augment samples; batches are
// assembled in order and prefetched. Small data sets are cached decoded (after preprocessing,
// before augmentation). This header stays free of LibTorch; data/batch_tensor.hpp turns a Batch
// into tensors.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "hemoscan/augment/augment.hpp"
#include "hemoscan/augment/lesion.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

namespace hemoscan {

struct Batch {
    std::vector<float> images;        // N x C x H x W, contiguous
    std::vector<float> labels;        // N x L
    std::vector<std::uint8_t> masks;  // N x H x W when the samples have masks, else empty
    std::vector<size_t> indices;      // dataset item index of each sample
    int n = 0, c = 0, h = 0, w = 0, num_labels = 0;
};

struct LoaderOptions {
    int batch_size = 32;
    bool shuffle = true;
    bool drop_last = false;
    int workers = 2;                 // decoding/augmenting threads
    int prefetch = 2;                // batches prepared ahead
    std::uint64_t seed = 0;
    bool augment = false;
    AugmentOptions augment_options{};
    LesionInsertOptions lesion{};    // with augment: a painted lesion sets lesion_labels to 1
    std::vector<int> lesion_labels;  // label indices a painted lesion makes positive
    size_t cache_max_bytes = size_t(1) << 30;  // cache decoded samples while the set fits (1 GiB)
    ModalityPolicy modality = ModalityPolicy::CtOnly;
    // Slice context (2.5D, ordered data sets): each sample's image holds the preprocessed slices
    // k - context .. k + context of its study as channels, in that order (the end slices repeated);
    // labels, mask and metadata stay those of slice k. 0 = the slice alone.
    int context = 0;
    // Distributed training (dist/): this process takes shard `shard_rank` of `shard_count` of every
    // epoch's order, dealt by shard_order (below, with `drop_last`). With a batch size that is the global
    // batch divided by the count, batch b of all ranks together is batch b of one process.
    int shard_rank = 0, shard_count = 1;
};

// Rank `rank` of `count`'s share of an epoch's `order`, dealt as PyTorch's DistributedSampler deals it:
// every count-th position from the rank, of the order padded by its first items to a multiple of the
// count (every rank takes as many steps; at most count - 1 items twice), or with `drop_tail` cut to a
// multiple of the count (for a loader that drops the last partial batch: the ranks' batches are then
// exactly one process's, which drops the same items).
std::vector<size_t> shard_order(const std::vector<size_t>& order, int rank, int count, bool drop_tail);

// Loads one dataset item as a preprocessed (not augmented) sample.
Sample load_sample(const Dataset& dataset, size_t index, const PreprocessOptions& preprocess,
                   ModalityPolicy modality = ModalityPolicy::CtOnly);

class DataLoader {
public:
    // `indices` selects the items (e.g. a split's train set).
    DataLoader(const Dataset& dataset, std::vector<size_t> indices, PreprocessOptions preprocess,
               LoaderOptions options);
    ~DataLoader();
    DataLoader(const DataLoader&) = delete;
    DataLoader& operator=(const DataLoader&) = delete;

    // Starts an epoch (reshuffles with mix(seed, epoch) when shuffling). Errors raised in workers
    // (e.g. a corrupt image) are re-thrown by next().
    void start_epoch(std::uint64_t epoch);
    // Next batch of the current epoch, or false at its end.
    bool next(Batch& batch);

    size_t batches_per_epoch() const;
    size_t size() const { return indices_.size(); }

private:
    struct State;
    const Dataset& dataset_;
    std::vector<size_t> indices_;
    PreprocessOptions preprocess_;
    LoaderOptions options_;
    std::unique_ptr<State> state_;
};

}  // namespace hemoscan

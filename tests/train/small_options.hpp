#pragma once
// Shared by the classifier training tests: a tiny, quick, deterministic run (cnn-simple at 48 px, one
// thread, no augmentation) on the blob data sets of support/synthetic_images.hpp.
#include <filesystem>

#include "hemoscan/train/trainer.hpp"

namespace hemoscan::test {

inline TrainOptions small_options(const std::filesystem::path& data, const std::filesystem::path& out) {
    TrainOptions o;
    o.data = data.string();
    o.out = out.string();
    o.model = "cnn-simple";
    o.size = 48;
    o.epochs = 12;
    o.batch = 8;
    o.lr = 3e-3;
    o.val_fraction = 0.25;
    o.threads = 1;
    o.workers = 1;
    o.patience = 0;
    o.seed = 7;
    o.augment = false;
    return o;
}

}  // namespace hemoscan::test

#pragma once
// Segmentation training: 2D models on slices drawn from volumes (the SegPredictor that reads the
// model file is in infer/seg_predictor.hpp). Free of LibTorch.
#include <filesystem>
#include <string>
#include <vector>

#include "hemoscan/data/seg_dataset.hpp"
#include "hemoscan/train/trainer.hpp"

namespace hemoscan {

// Trains options.model (unet | resunet | attention-unet) on the dataset in options.data into
// options.out: config.json, model.pt (meta: task "segment", class names, bleed classes, windows,
// input size, normalisation), checkpoints + --resume, log.csv (train loss, val Dice per class),
// curves.png, metrics.json (validation, evaluate's shape). Validation is a grouped holdout of whole
// cases (options.val_fraction). Training slices: options.bleed_fraction of each batch from slices
// with foreground. Reuses TrainOptions (epochs, batch, lr, size, window, augment, loss, depth, width
// as base-width multiplier of 32, seed, threads, workers).
TrainResult train_segmenter(const TrainOptions& options, const TrainCallbacks& callbacks = {}, bool resume = false);

}  // namespace hemoscan

#pragma once
// Training a classifier into a run folder (nnU-Net style: a stage that writes artefacts).
// RUN/ holds config.json (every option, data fingerprint, version), model.pt (self-describing),
// checkpoints, log.csv, split.csv, metrics.json and predictions.csv (validation), curves.png.
// This header stays free of LibTorch.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hemoscan/dist/env.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/train/schedule.hpp"

namespace hemoscan {

struct TrainOptions {
    std::string task = "classify";    // classify | segment (train/segment.hpp) | study (train/study.hpp)
    std::string data;                 // DATA folder (one of the three forms; segment: see data/seg_dataset.hpp)
    std::vector<std::string> labels;  // label columns (empty = all)
    std::string model = "cnn";
    std::string out;  // run folder
    int epochs = 40;
    int batch = 32;
    double lr = 1e-3;
    double weight_decay = 1e-4;
    std::string optimizer = "adamw";  // adam | adamw
    std::string schedule = "cosine";  // cosine | step | plateau | constant
    int warmup_epochs = 1;
    int size = 256;                // input size (square)
    bool keep_aspect = true;       // pad instead of stretching
    std::string window = "brain";  // DICOM input: brain | subdural | bone | L,W | rgb
    std::string normalization = "unit";
    bool crop_head = true;      // crop to the largest component (drops borders and letters)
    int median = 0;             // median filter kernel (0 = off)
    double val_fraction = 0.1;  // holdout when folds == 0
    int folds = 0;              // k-fold: train on all folds but `fold`
    int fold = 0;
    std::uint64_t seed = 42;
    int threads = 0;  // intra-op threads (0 = all cores)
    int workers = 2;  // loader threads
    bool augment = true;
    bool class_weights = true;  // weight the loss by label frequencies
    // Early stopping on validation AUC (0 = off). Off by default: the best epoch is kept anyway, and
    // on small validation sets a noisy early peak stopped training too soon (docs/notebook/results-log-2026-11.md).
    int patience = 0;
    double grad_clip = 5.0;         // max gradient norm (0 = off)
    std::optional<double> dropout;  // architecture default when unset
    double width = 1.0;             // channel multiplier
    std::string pool = "avg";       // classifier head: global avg, max or avgmax pooling (ModelConfig::pool)
    std::string modality = "ct";
    // MR: the channels by sequence name, comma-separated (t2,flair,swi_mag,swi_phase); empty = what the
    // data's case folders hold (case_sequences), or one grey channel for single images.
    std::string sequences;
    bool tta = true;  // average with the left-right mirrored image (validation and inference)
    // Exponential moving average of the weights, time constant in epochs (0 = off). Validation,
    // checkpoints and the final model use the averaged weights (BatchNorm recalibrated for them).
    double ema_epochs = 0;
    // Mixup: blend pairs of training images and their labels with a Beta(a, a) weight (0 = off).
    double mixup = 0;
    // Lesion insertion (classification, with augment): the probability that a training image gets a
    // painted small haematoma and becomes positive (augment/lesion.hpp; 0 = off).
    double insert_lesions = 0;
    // Segmentation (task = segment) and unet-ae.
    std::string loss = "ce-dice";  // dice | ce-dice | focal (models/seg_loss.hpp)
    int depth = 4;                 // U-Net levels (encoder blocks with a pooling step below them)
    double bleed_fraction = 0.5;   // share of training slices drawn from slices with foreground
    int pretrain_epochs = 0;       // unet-ae: reconstruction pre-training epochs before classification
    int context = 0;               // segment: neighbouring slices on each side as extra channels (2.5D)
    // Transfer learning: start from the weights of this model file (same architecture; tensors whose
    // name or shape differ, e.g. a head for other labels, keep their fresh initialisation). Empty = off.
    std::string init;
    // Transfer learning from other tools: a PyTorch state dict (torch.save zip, as torchvision
    // publishes, or .safetensors) mapped onto the model by parameter name (models/pretrained.hpp);
    // a file named like torchvision's (`resnet50-11ad3fa6.pth`) must match the SHA-256 prefix in its
    // name. Classification, and segmentation models with a pre-trainable encoder (resnet34-unet: the
    // weights load into the encoder). Excludes `init`. Empty = off.
    std::string pretrained;
    // Fine-tuning (classification; segment with a pre-trained encoder): epochs that train the head
    // alone (backbone weights and BatchNorm statistics fixed), the backbone's learning rate as a multiple
    // of `lr`, and BatchNorm statistics kept as they start throughout. Unset: 1 and 0.1 with
    // `pretrained`, else 0 and 1 (train/fine_tune.hpp).
    std::optional<int> freeze_epochs;
    std::optional<double> backbone_lr_mult;
    bool freeze_bn = false;
    // Study task (task = study, issue 26): stage 1 is the slice classifier the options above describe;
    // stage 2 a sequence model over its per-slice outputs, trained on out-of-fold outputs.
    std::string stage1;        // a slice model file to use as stage 1 instead of training one
    int stage1_folds = 5;      // folds for the out-of-fold stage-1 outputs of the training studies
    int study_epochs = 40;     // stage 2
    double study_lr = 3e-3;
    int study_hidden = 64;     // GRU units per direction
    // Distributed training (issue 31; classification): this process's place in a group of processes
    // (dist/env.hpp; world_size 1 = one process). `batch` stays the global batch: each rank takes
    // batch / world_size of it, so that the group trains as one process with that batch would.
    DistEnv dist;
    int dist_timeout_s = 300;  // a rank that does not answer for this long ends the others with an error
};

nlohmann::json train_options_to_json(const TrainOptions& o);

// The preprocessing the options describe (windows, size, aspect, median, normalisation, head crop): what
// both trainers apply and store in model.pt (preprocess_to_json). UsageError for a bad window or
// normalisation name.
PreprocessOptions preprocess_options_of(const TrainOptions& o);
// The data set options of a run (labels, sequences).
DatasetOptions dataset_options_of(const TrainOptions& o);
// MR runs without `sequences` on case folders: the sequences of the first case (io/sequences.hpp).
void resolve_sequences(TrainOptions& o, const Dataset& ds);
TrainOptions train_options_from_json(const nlohmann::json& j);

// Checks option values and combinations before anything is written (UsageError naming the option).
void validate_train_options(const TrainOptions& o);

// What the trainer reports while it runs (the CLI draws progress bars from it).
struct TrainCallbacks {
    std::function<void(int epoch, int epochs, size_t batches)> epoch_start;
    std::function<void(size_t batch, double loss)> batch_end;
    std::function<void(int epoch, const nlohmann::json& row)> epoch_end;  // the log.csv row
};

struct TrainResult {
    std::filesystem::path model_path;  // RUN/model.pt (best epoch, thresholds chosen on validation)
    nlohmann::json metrics;            // validation metrics (metrics.json)
    int epochs_run = 0;                // epochs finished in total (including resumed ones)
    int best_epoch = -1;
    std::vector<size_t> val_indices;             // dataset items used for validation
    std::vector<std::vector<double>> val_probs;  // their probabilities at the best epoch
};

// Trains per the options into options.out. With `resume`, continues the run in options.out from
// its last checkpoint (written after every epoch), giving the same epochs as an uninterrupted run.
// `split` overrides the holdout/fold split (used by cross-validation).
// `group`: the process group of options.dist to train in (cross-validation passes its own, one for all
// folds); null: the run joins one itself when options.dist is distributed.
TrainResult train_classifier(const TrainOptions& options, const TrainCallbacks& callbacks = {}, bool resume = false,
                             const Split* split = nullptr, ProcessGroup* group = nullptr);

// Options saved in RUN/config.json.
TrainOptions load_run_options(const std::filesystem::path& run);

}  // namespace hemoscan

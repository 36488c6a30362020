#pragma once
// Segmentation architectures chosen by name (U-Net family). Free of LibTorch, like registry.hpp;
// models/segmenter.hpp holds the torch-side base class.
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace hemoscan {

class SegmenterImpl;

// What create_segmenter() builds; stored in every segmentation model file (meta["model"]).
struct SegModelConfig {
    std::string name = "unet";  // unet | resunet | attention-unet
    int in_channels = 1;        // CT windows / image channels
    int num_classes = 2;        // output channels incl. background (2 = binary "bleed")
    int depth = 4;              // pooling levels (1..6); the input size must be divisible by 2^depth
    int base_width = 32;        // channels of the first level, doubled per level
    double dropout = 0.0;       // at the bottleneck
};

struct SegModelInfo {
    std::string name;
    std::string description;  // one line, for `hemoscan models`
    // A pre-trainable encoder: the classifier architecture whose weights it takes ("resnet34"), and the
    // pooling levels it always has (the input size must be divisible by 2^levels); empty / 0: none, and
    // `depth` sets the levels.
    std::string encoder;
    int fixed_depth = 0;
};

// Registered segmentation architectures, default ("unet") first.
std::vector<SegModelInfo> list_seg_models();
bool is_seg_model(const std::string& name);
// The registry entry of a segmentation model (UsageError listing the known ones for an unknown name).
SegModelInfo seg_model_info(const std::string& name);

// Builds a model with fresh weights (seeded by torch::manual_seed), in training mode.
// Unknown name -> UsageError listing the known ones; bad sizes (classes < 2, depth outside 1..6,
// base_width < 4, in_channels < 1, dropout outside [0, 1)) -> UsageError.
std::shared_ptr<SegmenterImpl> create_segmenter(const SegModelConfig& config);

nlohmann::json seg_model_config_to_json(const SegModelConfig& config);
SegModelConfig seg_model_config_from_json(const nlohmann::json& json);  // missing keys -> defaults

}  // namespace hemoscan

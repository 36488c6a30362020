#pragma once
// Classifier architectures chosen by name. This header stays free of LibTorch (the CLI lists the
// models and builds configs without it); models/classifier.hpp holds the torch-side base class.
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

namespace hemoscan {

class ClassifierImpl;

// What create_model() builds. Stored in every model file (meta["model"]), so a saved model can be
// rebuilt without any other options.
struct ModelConfig {
    std::string name = "cnn";       // registry name: cnn, cnn-simple, cnn-large
    int in_channels = 1;            // 1 (one CT window) or 3 (three windows / RGB)
    int num_outputs = 1;            // labels (multi-label, sigmoid) or classes (multi-class, softmax)
    bool multiclass = false;        // true: softmax over the outputs; false: one sigmoid per output
    std::optional<double> dropout;  // before the output layer; unset: the architecture's default
    double width = 1.0;             // channel multiplier for every conv/dense layer (0.25..4)
    // Global pooling of the last feature map before the dense layers: "avg" (mean), "max", or "avgmax"
    // (both, concatenated). Max pooling keeps a small focal finding from being averaged away.
    std::string pool = "avg";
};

struct ModelInfo {
    std::string name;
    std::string description;  // one line, for `hemoscan models`
    double default_dropout = 0;
};

// Registered architectures, default ("cnn") first.
std::vector<ModelInfo> list_models();

// Builds a model with freshly initialised weights (Kaiming for convs; draws from the torch RNG, so
// torch::manual_seed makes it deterministic). The model starts in training mode.
// Unknown name -> UsageError "unknown model 'x' (known: cnn, cnn-simple, cnn-large)"; impossible
// sizes (in_channels/num_outputs < 1, multiclass with fewer than 2 outputs, dropout outside [0, 1),
// width outside [0.25, 4], pool not avg/max/avgmax) -> UsageError.
std::shared_ptr<ClassifierImpl> create_model(const ModelConfig& config);

// JSON form: {"name", "in_channels", "num_outputs", "multiclass", "dropout" (null: default), "width", "pool"}.
// model_config_from_json() fills missing keys with the defaults above and throws UsageError on keys
// of the wrong type.
nlohmann::json model_config_to_json(const ModelConfig& config);
ModelConfig model_config_from_json(const nlohmann::json& json);

}  // namespace hemoscan

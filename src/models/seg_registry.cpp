// The segmentation model registry and the SegModelConfig <-> JSON mapping.
#include "hemoscan/models/seg_registry.hpp"

#include <functional>

#include <nlohmann/json.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/models/attention_unet.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/named_registry.hpp"
#include "hemoscan/models/resnet_unet.hpp"
#include "hemoscan/models/resunet.hpp"
#include "hemoscan/models/unet.hpp"

namespace hemoscan {

namespace {

using Registry =
    NamedRegistry<SegModelInfo, std::function<std::shared_ptr<SegmenterImpl>(const SegModelConfig&)>>;

const Registry& registry() {
    static const Registry entries("segmentation model", {
        {{"unet", "U-Net: DoubleConv (conv/BN/ReLU x2) levels, transposed-conv up, skip concat; 7.8M params "
                  "(depth 4, base 32)", "", 0},
         [](const SegModelConfig& c) { return std::make_shared<UNetImpl>(c); }},
        {{"resunet", "U-Net with residual blocks (1x1 projection shortcuts) instead of DoubleConv; 8.7M params", "", 0},
         [](const SegModelConfig& c) { return std::make_shared<ResUNetImpl>(c); }},
        {{"attention-unet", "U-Net with additive attention gates on the skips (Oktay 2018); 7.8M params", "", 0},
         [](const SegModelConfig& c) { return std::make_shared<AttentionUNetImpl>(c); }},
        // The common "ResNet-34 U-Net" (segmentation_models_pytorch's Unet layout): the encoder takes
        // torchvision's resnet34 weights (`pretrained`).
        {{"resnet34-unet",
          "U-Net on a ResNet-34 encoder (torchvision names under encoder.; `pretrained` resnet34 weights), "
          "decoder 256-128-64-32-16 (base 32), 5 levels: size divisible by 32; 24.4M params",
          "resnet34", 5},
         [](const SegModelConfig& c) {
             return std::make_shared<ResNetUNetImpl>(c, "resnet34", std::vector<int>{3, 4, 6, 3});
         }},
        {{"resnet18-unet",
          "U-Net on a ResNet-18 encoder (torchvision names under encoder.; `pretrained` resnet18 weights), "
          "decoder 256-128-64-32-16 (base 32), 5 levels: size divisible by 32; 14.3M params",
          "resnet18", 5},
         [](const SegModelConfig& c) {
             return std::make_shared<ResNetUNetImpl>(c, "resnet18", std::vector<int>{2, 2, 2, 2});
         }},
    });
    return entries;
}

}  // namespace

std::vector<SegModelInfo> list_seg_models() { return registry().infos(); }

bool is_seg_model(const std::string& name) { return registry().contains(name); }

SegModelInfo seg_model_info(const std::string& name) { return registry().find(name).info; }

std::shared_ptr<SegmenterImpl> create_segmenter(const SegModelConfig& config) {
    const auto& entry = registry().find(config.name);

    const std::string where = "model '" + config.name + "': ";
    if (config.in_channels < 1)
        throw UsageError(where + "in_channels must be >= 1 (got " + std::to_string(config.in_channels) + ")");
    if (config.num_classes < 2)
        throw UsageError(where + "num_classes must be >= 2, background included (got " +
                         std::to_string(config.num_classes) + ")");
    if (config.depth < 1 || config.depth > 6)
        throw UsageError(where + "depth must be in 1..6 (got " + std::to_string(config.depth) + ")");
    if (config.base_width < 4)
        throw UsageError(where + "base width must be >= 4 (got " + std::to_string(config.base_width) + ")");
    // Channels double per level: keep base_width * 2^depth a sane int.
    if (config.base_width > 4096)
        throw UsageError(where + "base width must be <= 4096 (got " + std::to_string(config.base_width) + ")");
    if (!(config.dropout >= 0.0 && config.dropout < 1.0))
        throw UsageError(where + "dropout must be in [0, 1) (got " + std::to_string(config.dropout) + ")");

    auto model = entry.make(config);
    init_weights(*model);
    return model;
}

nlohmann::json seg_model_config_to_json(const SegModelConfig& config) {
    nlohmann::json j;
    j["name"] = config.name;
    j["in_channels"] = config.in_channels;
    j["num_classes"] = config.num_classes;
    j["depth"] = config.depth;
    j["base_width"] = config.base_width;
    j["dropout"] = config.dropout;
    return j;
}

SegModelConfig seg_model_config_from_json(const nlohmann::json& j) {
    if (!j.is_object()) throw UsageError("segmentation model config: expected a JSON object, got " + j.dump());
    using Json = nlohmann::json;
    // The value under `key`, or nullptr when absent; UsageError when it has the wrong type.
    auto field = [&](const char* key, bool (Json::*is_type)() const noexcept, const char* what) -> const Json* {
        auto it = j.find(key);
        if (it == j.end()) return nullptr;
        if (!((*it).*is_type)())
            throw UsageError(std::string("segmentation model config: '") + key + "' must be " + what + ", got " +
                             it->dump());
        return &*it;
    };
    SegModelConfig c;
    if (auto v = field("name", &Json::is_string, "a string")) c.name = v->get<std::string>();
    if (auto v = field("in_channels", &Json::is_number_integer, "an integer")) c.in_channels = v->get<int>();
    if (auto v = field("num_classes", &Json::is_number_integer, "an integer")) c.num_classes = v->get<int>();
    if (auto v = field("depth", &Json::is_number_integer, "an integer")) c.depth = v->get<int>();
    if (auto v = field("base_width", &Json::is_number_integer, "an integer")) c.base_width = v->get<int>();
    if (auto v = field("dropout", &Json::is_number, "a number")) c.dropout = v->get<double>();
    return c;
}

}  // namespace hemoscan

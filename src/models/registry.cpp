// The model registry, the shared helpers of ClassifierImpl, and the config <-> JSON mapping.
#include "hemoscan/models/registry.hpp"

#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/cnn.hpp"
#include "hemoscan/models/densenet.hpp"
#include "hemoscan/models/efficientnet.hpp"
#include "hemoscan/models/named_registry.hpp"
#include "hemoscan/models/resnet.hpp"
#include "hemoscan/models/simple_cnn.hpp"
#include "hemoscan/models/unet_ae.hpp"
#include "hemoscan/models/vgg.hpp"

namespace hemoscan {

namespace {

using Registry = NamedRegistry<ModelInfo, std::function<std::shared_ptr<ClassifierImpl>(const ModelConfig&)>>;

const Registry& registry() {
    static const Registry entries("model", {
        {{"cnn",
          "conv/BN/ReLU stem + 4 blocks of 2 conv/BN/ReLU (32-256 ch), avg pool, dropout 0.3, linear; 1.2M params; "
          "2 CPU cores, 128 px: train 83, infer 46 images/s",
          0.3},
         [](const ModelConfig& c) { return std::make_shared<CnnImpl>(c); }},
        // Without BatchNorm these two learn slowly: on ~130 training images the default 40 epochs leave the
        // training loss at 0.61-0.67 (ln 2 = 0.69); cnn-large needs about 100, cnn-simple stays weak even then
        // (docs/notebook/results-log-2026-11.md).
        {{"cnn-simple",
          "3 blocks of conv 3x3 (32 ch)/ReLU/max-pool, avg pool, dropout 0.4, dense 32; 20k params; no BatchNorm: "
          "a weak baseline that learns slowly",
          0.4},
         [](const ModelConfig& c) {
             return std::make_shared<SimpleCnnImpl>(c, std::vector<int>{32, 32, 32}, 32);
         }},
        {{"cnn-large",
          "5 blocks of conv 3x3/ReLU/max-pool (32-64-128-128-256 ch), avg pool, dropout 0.4, dense 64; 0.55M params; "
          "no BatchNorm: slow to train, give small sets `epochs` 100 or more",
          0.4},
         [](const ModelConfig& c) {
             return std::make_shared<SimpleCnnImpl>(c, std::vector<int>{32, 64, 128, 128, 256}, 64);
         }},
        {{"unet-ae",
          "U-Net encoder (16-128 ch) + bottleneck 256 ch, avg pool, dropout 0.3, linear; 1.9M params; decoder for "
          "`pretrain_epochs`",
          0.3},
         [](const ModelConfig& c) { return std::make_shared<UNetAutoencoderImpl>(c); }},
        // torchvision's structure and names: a torchvision state dict loads one to one (`pretrained`).
        {{"resnet18", "ResNet-18 (torchvision names; BasicBlocks 2-2-2-2, 64-512 ch), pool, dropout 0.2, fc; 11.2M params; "
          "2 CPU cores, 128 px: train 45, infer 44 images/s",
          0.2},
         [](const ModelConfig& c) { return std::make_shared<ResNetImpl>(c, std::vector<int>{2, 2, 2, 2}, false); }},
        {{"resnet34", "ResNet-34 (torchvision names; BasicBlocks 3-4-6-3, 64-512 ch), pool, dropout 0.2, fc; 21.3M params; "
          "2 CPU cores, 128 px: train 26, infer 36 images/s",
          0.2},
         [](const ModelConfig& c) { return std::make_shared<ResNetImpl>(c, std::vector<int>{3, 4, 6, 3}, false); }},
        {{"resnet50",
          "ResNet-50 (torchvision names; Bottlenecks 3-4-6-3, 256-2048 ch), pool, dropout 0.2, fc; 23.5M params; "
          "2 CPU cores, 128 px: train 16, infer 26 images/s",
          0.2},
         [](const ModelConfig& c) { return std::make_shared<ResNetImpl>(c, std::vector<int>{3, 4, 6, 3}, true); }},
        // VGG flattens a 7x7 map into its 4096-wide classifier.0, as torchvision: `pool` must stay avg.
        {{"vgg19",
          "VGG-19 (torchvision names; 16 conv 3x3/ReLU, 64-512 ch), avg pool 7x7 (pool avg only), dense 4096, "
          "dropout 0.5, dense 4096, dropout 0.5, classifier; 139.6M params; 2 CPU cores, 128 px: train 6, "
          "infer 10 images/s",
          0.5},
         [](const ModelConfig& c) { return std::make_shared<VggImpl>(c, false); }},
        {{"vgg19-bn",
          "VGG-19 with BatchNorm (torchvision names; 16 conv 3x3/BN/ReLU), avg pool 7x7 (pool avg only), dense "
          "4096, dropout 0.5, dense 4096, dropout 0.5, classifier; 139.6M params; 2 CPU cores, 128 px: train 4, "
          "infer 9 images/s",
          0.5},
         [](const ModelConfig& c) { return std::make_shared<VggImpl>(c, true); }},
        {{"densenet121",
          "DenseNet-121 (torchvision names; dense blocks 6-12-24-16, growth 32, 64-1024 ch), pool, dropout 0.2, "
          "classifier; 7.0M params; 2 CPU cores, 128 px: train 20, infer 23 images/s",
          0.2},
         [](const ModelConfig& c) { return std::make_shared<DenseNetImpl>(c); }},
        {{"efficientnet-b0",
          "EfficientNet-B0 (torchvision names; 16 MBConv blocks with squeeze-excitation, 16-320 ch, conv 1280, "
          "stochastic depth 0.2), pool, dropout 0.2, classifier; 4.0M params; 2 CPU cores, 128 px: train 44, "
          "infer 53 images/s",
          0.2},
         [](const ModelConfig& c) { return std::make_shared<EfficientNetImpl>(c); }},
    });
    return entries;
}

}  // namespace

std::vector<ModelInfo> list_models() { return registry().infos(); }

std::shared_ptr<ClassifierImpl> create_model(const ModelConfig& config) {
    const auto& entry = registry().find(config.name);

    const std::string where = "model '" + config.name + "': ";
    if (config.in_channels < 1)
        throw UsageError(where + "in_channels must be >= 1 (got " + std::to_string(config.in_channels) + ")");
    if (config.num_outputs < 1)
        throw UsageError(where + "num_outputs must be >= 1 (got " + std::to_string(config.num_outputs) + ")");
    if (config.multiclass && config.num_outputs < 2)
        throw UsageError(where + "a multi-class (softmax) model needs at least 2 outputs");
    if (config.dropout && !(*config.dropout >= 0.0 && *config.dropout < 1.0))
        throw UsageError(where + "dropout must be in [0, 1) (got " + std::to_string(*config.dropout) + ")");
    if (!(config.width >= 0.25 && config.width <= 4.0))
        throw UsageError(where + "width must be in [0.25, 4] (got " + std::to_string(config.width) + ")");
    if (config.pool != "avg" && config.pool != "max" && config.pool != "avgmax")
        throw UsageError(where + "pool must be avg, max or avgmax (got '" + config.pool + "')");

    ModelConfig resolved = config;
    if (!resolved.dropout) resolved.dropout = entry.info.default_dropout;
    auto model = entry.make(resolved);
    init_weights(*model);
    return model;
}

nlohmann::json model_config_to_json(const ModelConfig& config) {
    nlohmann::json j;
    j["name"] = config.name;
    j["in_channels"] = config.in_channels;
    j["num_outputs"] = config.num_outputs;
    j["multiclass"] = config.multiclass;
    j["dropout"] = config.dropout ? nlohmann::json(*config.dropout) : nlohmann::json(nullptr);
    j["width"] = config.width;
    j["pool"] = config.pool;
    return j;
}

ModelConfig model_config_from_json(const nlohmann::json& j) {
    if (!j.is_object()) throw UsageError("model config: expected a JSON object, got " + j.dump());
    using Json = nlohmann::json;
    // The value under `key`, or nullptr when absent; UsageError when it has the wrong type.
    auto field = [&](const char* key, bool (Json::*is_type)() const noexcept, const char* what) -> const Json* {
        auto it = j.find(key);
        if (it == j.end()) return nullptr;
        if (!((*it).*is_type)())
            throw UsageError(std::string("model config: '") + key + "' must be " + what + ", got " + it->dump());
        return &*it;
    };
    ModelConfig c;
    if (auto v = field("name", &Json::is_string, "a string")) c.name = v->get<std::string>();
    if (auto v = field("in_channels", &Json::is_number_integer, "an integer")) c.in_channels = v->get<int>();
    if (auto v = field("num_outputs", &Json::is_number_integer, "an integer")) c.num_outputs = v->get<int>();
    if (auto v = field("multiclass", &Json::is_boolean, "true or false")) c.multiclass = v->get<bool>();
    if (auto v = field("width", &Json::is_number, "a number")) c.width = v->get<double>();
    if (auto v = field("pool", &Json::is_string, "a string")) c.pool = v->get<std::string>();  // absent: avg
    if (j.contains("dropout") && !j.at("dropout").is_null())
        c.dropout = field("dropout", &Json::is_number, "a number or null")->get<double>();
    return c;
}

torch::Tensor probabilities(const torch::Tensor& logits, bool multiclass) {
    if (logits.dim() != 2) {
        std::ostringstream ss;
        ss << "probabilities: expected N x K logits, got shape " << logits.sizes();
        throw UsageError(ss.str());
    }
    return multiclass ? torch::softmax(logits, 1) : torch::sigmoid(logits);
}

torch::Tensor global_pool(const torch::Tensor& features, const std::string& pool) {
    if (pool == "max") return features.amax({2, 3});
    if (pool == "avgmax") return torch::cat({features.mean({2, 3}), features.amax({2, 3})}, 1);
    return features.mean({2, 3});
}

int pooled_channels(int channels, const std::string& pool) { return pool == "avgmax" ? 2 * channels : channels; }

bool is_head_parameter(const ClassifierImpl& model, const std::string& name) {
    for (const auto& m : model.head_modules())
        if (name == m || name.rfind(m + ".", 0) == 0) return true;
    return false;
}

std::int64_t parameter_count(const torch::nn::Module& module) {
    std::int64_t n = 0;
    for (const auto& p : module.parameters()) n += p.numel();
    return n;
}

void init_weights(torch::nn::Module& module) {
    torch::NoGradGuard no_grad;
    // With BatchNorm after every conv the scale is renormalised, and fan_out (torchvision's choice)
    // keeps the backward pass stable. Without BatchNorm the forward signal must survive on its own:
    // fan_in keeps its variance (He et al. 2015); fan_out on a first conv with one input channel
    // shrinks it about sixfold per layer and the dense ReLUs start dead.
    bool has_bn = false;
    for (auto& m : module.modules(/*include_self=*/true)) has_bn = has_bn || m->as<torch::nn::BatchNorm2d>() != nullptr;
    const torch::nn::init::FanModeType mode =
        has_bn ? torch::nn::init::FanModeType(torch::kFanOut) : torch::nn::init::FanModeType(torch::kFanIn);
    for (auto& m : module.modules(/*include_self=*/true)) {
        if (auto* conv = m->as<torch::nn::Conv2d>()) {
            torch::nn::init::kaiming_normal_(conv->weight, 0.0, mode, torch::kReLU);
            if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
        } else if (auto* up = m->as<torch::nn::ConvTranspose2d>()) {  // U-Net up-sampling
            torch::nn::init::kaiming_normal_(up->weight, 0.0, mode, torch::kReLU);
            if (up->bias.defined()) torch::nn::init::zeros_(up->bias);
        } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
            torch::nn::init::ones_(bn->weight);
            torch::nn::init::zeros_(bn->bias);
        }
    }
}

}  // namespace hemoscan

// Export of a model file's weights for PyTorch users (models/export.hpp).
#include "hemoscan/models/export.hpp"

#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/pretrained.hpp"
#include "hemoscan/models/segmenter.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/version.hpp"

namespace hemoscan {

std::string torchvision_name(const std::string& architecture) {
    static const std::map<std::string, std::string> names = {
        {"resnet18", "resnet18"}, {"resnet34", "resnet34"},       {"resnet50", "resnet50"},
        {"vgg19", "vgg19"},       {"vgg19-bn", "vgg19_bn"},       {"densenet121", "densenet121"},
        {"efficientnet-b0", "efficientnet_b0"}};
    const auto it = names.find(architecture);
    return it == names.end() ? std::string() : it->second;
}

namespace {

// The first convolution's weight (the first 4-D parameter in registration order) repeated over three
// input channels / 3: the same response to a grey image given in all three channels.
std::string expand_first_conv(torch::nn::Module& model, StateDict& sd) {
    for (const auto& p : model.named_parameters()) {
        if (p.value().dim() != 4) continue;
        if (p.value().size(1) != 1) return "";
        sd[p.key()] = p.value().detach().repeat({1, 3, 1, 1}) / 3.0;
        return p.key();
    }
    return "";
}

std::string dump(const nlohmann::json& j) { return j.is_null() ? std::string() : j.dump(); }

}  // namespace

ExportSummary export_model(const std::filesystem::path& model_file, const std::filesystem::path& out,
                           const ExportOptions& options) {
    const nlohmann::json meta = read_model_meta(model_file);
    ExportSummary s;
    s.task = meta.value("task", std::string("classify"));
    StateDict sd;
    nlohmann::json config;
    int in_channels = 0;
    bool torchvision_ok = false;
    if (s.task == "segment") {
        LoadedSegmenter seg = load_segmenter(model_file);
        sd = state_dict_of(*seg.model);
        config = meta["model"];
        s.architecture = config.value("name", std::string());
        in_channels = config.value("in_channels", 1);
    } else {
        LoadedModel m = load_model(model_file);
        sd = state_dict_of(*m.model);
        config = meta["model"];
        s.architecture = m.model->config().name;
        in_channels = m.model->config().in_channels;
        s.torchvision = torchvision_name(s.architecture);
        if (!s.torchvision.empty() && in_channels == 1 && options.expand_grey) {
            s.expanded = !expand_first_conv(*m.model, sd).empty();
        }
        // torchvision's models average-pool before their classifier and take three channels.
        torchvision_ok = !s.torchvision.empty() && m.model->config().pool == "avg" && (in_channels == 3 || s.expanded);
        if (meta.contains("study")) {
            logger().warn("{}: a study model: its slice model (stage 1) is exported, the study model (stage 2) is not",
                          model_file.string());
        }
    }
    if (!torchvision_ok) s.torchvision.clear();
    for (const auto& [k, t] : sd) {
        ++s.tensors;
        s.values += t.numel();
    }
    const nlohmann::json labels = meta.contains("labels") ? meta["labels"] : meta.value("class_names", nlohmann::json());
    const bool multiclass = meta.value("multiclass", false);
    s.metadata = {{"format", "hemoscan-export-1"},
                  {"hemoscan_version", kVersion},
                  {"source", model_file.filename().string()},
                  {"task", s.task},
                  {"architecture", s.architecture},
                  {"torchvision_architecture", s.torchvision},
                  {"model_config", dump(config)},
                  {"labels", dump(labels)},
                  {"num_classes", std::to_string(config.value("num_outputs", config.value("num_classes", 0)))},
                  {"activation", s.task == "segment" ? "softmax" : multiclass ? "softmax" : "sigmoid"},
                  {"thresholds", dump(meta.value("thresholds", nlohmann::json()))},
                  {"preprocess", dump(meta.value("preprocess", nlohmann::json()))},
                  {"input_channels", std::to_string(in_channels)},
                  {"exported_input_channels", std::to_string(s.expanded ? 3 : in_channels)}};
    write_safetensors(out, sd, s.metadata);
    return s;
}

}  // namespace hemoscan

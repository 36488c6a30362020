#pragma once
// Export for PyTorch users (issue 27): a hemoscan model file's weights as a .safetensors file under
// the parameter names of torchvision (for the architectures that have its structure: resnet18/34/50,
// vgg19, vgg19-bn, densenet121, efficientnet-b0) or hemoscan's own names (the others), with metadata
// that says how to rebuild and feed the model: architecture, labels, activation, thresholds,
// preprocessing (docs/transfer.md has a Python example). This header stays free of LibTorch.
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace hemoscan {

// torchvision's constructor name for a hemoscan architecture ("vgg19-bn" -> "vgg19_bn"), or empty
// when torchvision has no model of the same structure and names.
std::string torchvision_name(const std::string& architecture);

struct ExportOptions {
    // A model for one input channel gets its first conv repeated over three channels and divided by 3,
    // so that torchvision's constructor (3 channels) loads it strictly; fed a grey image in all three
    // channels it gives the same outputs.
    bool expand_grey = true;
};

struct ExportSummary {
    std::string architecture;  // hemoscan's name
    std::string torchvision;   // torchvision's constructor that loads the file strictly, or empty
    std::string task;          // classify | segment
    size_t tensors = 0;
    std::int64_t values = 0;
    bool expanded = false;                        // the first conv was expanded from 1 to 3 channels
    std::map<std::string, std::string> metadata;  // as written (safetensors metadata is string to string)
};

// Reads a hemoscan model file (classifier, segmenter or study model; a study model's stage 2 is not
// exported: a warning says so) and writes its parameters and buffers to `out` atomically.
// InputError naming the file for a file that is not a hemoscan model.
ExportSummary export_model(const std::filesystem::path& model_file, const std::filesystem::path& out,
                           const ExportOptions& options = {});

}  // namespace hemoscan

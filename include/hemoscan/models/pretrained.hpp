#pragma once
// Weights from and for other tools (issue 27): safetensors files (the format of Hugging Face and of
// torchvision/timm exports: an 8-byte header length, a JSON header, raw little-endian tensors), and
// mapping a PyTorch state dict onto a hemoscan model by parameter name. Includes LibTorch.
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace hemoscan {

using StateDict = std::map<std::string, torch::Tensor>;

// Reads every tensor of a .safetensors file (F64, F32, F16, BF16, I64, I32, U8, BOOL; returned on the
// CPU, float types as stored) and, in `metadata` when given, its "__metadata__" object. InputError
// naming the file for a missing or truncated file, a bad header, an unknown dtype or offsets outside the data.
StateDict read_safetensors(const std::filesystem::path& file, nlohmann::json* metadata = nullptr);

// Reads the state dict of a torch.save file (the zip format of PyTorch >= 1.6, as torchvision
// publishes its weights): a dict of tensors, or the dict under "state_dict"/"model_state_dict"/"model"
// of a training checkpoint. InputError naming the file for anything else (an older format, pickled
// objects other than tensors and dicts, missing storages).
StateDict read_torch_state_dict(const std::filesystem::path& file);

// read_safetensors() for *.safetensors, read_torch_state_dict() otherwise.
StateDict read_weights(const std::filesystem::path& file);

// Writes tensors (contiguous copies, as stored) and string metadata to a .safetensors file atomically.
void write_safetensors(const std::filesystem::path& file, const StateDict& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// A copy of every parameter and buffer of `module` under its name (what torch's state_dict() holds).
StateDict state_dict_of(torch::nn::Module& module);

// What load_state_dict() did with each parameter and buffer of the model.
struct WeightReport {
    std::vector<std::string> loaded;   // taken from the file
    std::vector<std::string> adapted;  // taken after adapting (the first conv's input channels)
    std::vector<std::string> fresh;    // not in the file, or of another shape: kept as initialised
    std::vector<std::string> unused;   // in the file but not in the model
    nlohmann::json to_json() const;
};

// Copies the tensors of `state` into the model's parameters and buffers of the same name. Names may
// carry a "module." (DataParallel) or "model." prefix. The older DenseNet names of torchvision's published
// files ("...denselayerJ.norm.1.weight"; norm/relu/conv, .1/.2, weight/bias/running_mean/running_var) are
// renamed as torchvision renames them when it loads one ("...denselayerJ.norm1.weight"). A tensor of
// another shape stays fresh, except a 4-D weight whose input channels differ from 3 to 1 (an RGB first
// conv for one-channel input: summed over its channels, as is usual) or 1 to 3 (repeated, divided by 3).
WeightReport load_state_dict(torch::nn::Module& model, const StateDict& state);

}  // namespace hemoscan

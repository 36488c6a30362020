// safetensors files and state-dict mapping (models/pretrained.hpp).
#include "hemoscan/models/pretrained.hpp"

#include <cstring>
#include <fstream>
#include <regex>

#include "hemoscan/error.hpp"
#include "hemoscan/util/fs.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

struct DtypeInfo {
    const char* name;
    torch::ScalarType type;
    size_t bytes;
};

const std::vector<DtypeInfo>& dtypes() {
    static const std::vector<DtypeInfo> d = {{"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4},
                                             {"F16", torch::kFloat16, 2}, {"BF16", torch::kBFloat16, 2},
                                             {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
                                             {"U8", torch::kUInt8, 1},    {"BOOL", torch::kBool, 1}};
    return d;
}

const DtypeInfo* dtype_named(const std::string& name) {
    for (const auto& d : dtypes()) {
        if (name == d.name) return &d;
    }
    return nullptr;
}

const DtypeInfo& dtype_of(torch::ScalarType t) {
    for (const auto& d : dtypes()) {
        if (d.type == t) return d;
    }
    throw UsageError(std::string("write_safetensors: unsupported dtype ") + c10::toString(t));
}

std::string strip_prefix(const std::string& name) {
    for (const char* prefix : {"module.", "model."}) {
        if (name.rfind(prefix, 0) == 0) return name.substr(std::strlen(prefix));
    }
    return name;
}

// torchvision's published DenseNet files predate its current names: "denselayer1.norm.1.weight" is now
// "denselayer1.norm1.weight". The same pattern as torchvision's densenet._load_state_dict.
std::string current_densenet_name(const std::string& name) {
    if (name.find("denselayer") == std::string::npos) return name;  // the regex is slow; most names skip it
    static const std::regex old_name(
        R"(^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$)");
    std::smatch m;
    return std::regex_match(name, m, old_name) ? m[1].str() + m[2].str() : name;
}

}  // namespace

StateDict read_safetensors(const fs::path& file, nlohmann::json* metadata) {
    const std::string name = file.string();
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) throw InputError(name + ": file not found");
    const std::string bytes = read_file(file);
    if (bytes.size() < 8) throw InputError(name + ": not a safetensors file (shorter than its header length)");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
    if (n > bytes.size() - 8) throw InputError(name + ": not a safetensors file (header length past the end)");
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(bytes.substr(8, n));
    } catch (const nlohmann::json::exception& e) {
        throw InputError(name + ": safetensors header is not JSON (" + e.what() + ")");
    }
    if (!header.is_object()) throw InputError(name + ": safetensors header is not a JSON object");
    const size_t data_start = 8 + n, data_size = bytes.size() - data_start;
    StateDict out;
    for (const auto& [key, v] : header.items()) {
        if (key == "__metadata__") {
            if (metadata) *metadata = v;
            continue;
        }
        try {
            const DtypeInfo* d = dtype_named(v.at("dtype").get<std::string>());
            if (!d) throw InputError(name + ": tensor '" + key + "' has an unsupported dtype " + v.at("dtype").dump());
            const auto shape = v.at("shape").get<std::vector<int64_t>>();
            const auto offsets = v.at("data_offsets").get<std::vector<size_t>>();
            size_t count = 1;
            for (int64_t s : shape) {
                if (s < 0) throw InputError(name + ": tensor '" + key + "' has a negative dimension");
                count *= static_cast<size_t>(s);
            }
            if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > data_size ||
                offsets[1] - offsets[0] != count * d->bytes) {
                throw InputError(name + ": tensor '" + key + "' has data offsets that do not fit its shape or the file");
            }
            torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(d->type));
            if (count > 0) std::memcpy(t.data_ptr(), bytes.data() + data_start + offsets[0], count * d->bytes);
            out[key] = t;
        } catch (const nlohmann::json::exception& e) {
            throw InputError(name + ": tensor '" + key + "': bad header entry (" + e.what() + ")");
        }
    }
    return out;
}

void write_safetensors(const fs::path& file, const StateDict& tensors, const std::map<std::string, std::string>& metadata) {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::vector<torch::Tensor> data;
    size_t offset = 0;
    for (const auto& [key, t] : tensors) {
        torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
        const DtypeInfo& d = dtype_of(c.scalar_type());
        const size_t size = static_cast<size_t>(c.numel()) * d.bytes;
        header[key] = {{"dtype", d.name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + size}}};
        offset += size;
        data.push_back(c);
    }
    std::string head = header.dump();
    head.append((8 - head.size() % 8) % 8, ' ');  // the data starts 8-byte aligned, as the format recommends
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((head.size() >> (8 * i)) & 0xFF);
    out += head;
    for (const auto& c : data) {
        out.append(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * c.element_size());
    }
    write_file_atomic(file, out);
}

nlohmann::json WeightReport::to_json() const {
    return {{"loaded", loaded.size()}, {"adapted", adapted}, {"fresh", fresh}, {"unused", unused}};
}

WeightReport load_state_dict(torch::nn::Module& model, const StateDict& state) {
    StateDict by_name;
    for (const auto& [k, v] : state) by_name[current_densenet_name(strip_prefix(k))] = v;
    WeightReport report;
    std::map<std::string, bool> used;
    torch::NoGradGuard ng;
    auto take = [&](const std::string& key, torch::Tensor& target) {
        const auto it = by_name.find(key);
        if (it == by_name.end()) {
            report.fresh.push_back(key);
            return;
        }
        used[key] = true;
        torch::Tensor src = it->second.to(target.dtype());
        if (src.sizes() == target.sizes()) {
            target.copy_(src);
            report.loaded.push_back(key);
        } else if (src.dim() == 4 && target.dim() == 4 && src.size(0) == target.size(0) &&
                   src.sizes().slice(2) == target.sizes().slice(2) &&
                   ((src.size(1) == 3 && target.size(1) == 1) || (src.size(1) == 1 && target.size(1) == 3))) {
            // The response to a grey image (equal channels) stays the same either way.
            target.copy_(src.size(1) == 3 ? src.sum(1, true) : src.repeat({1, 3, 1, 1}) / 3.0);
            report.adapted.push_back(key);
        } else {
            report.fresh.push_back(key + " (file " + c10::str(src.sizes()) + ", model " + c10::str(target.sizes()) + ")");
        }
    };
    for (auto& p : model.named_parameters()) take(p.key(), p.value());
    for (auto& b : model.named_buffers()) take(b.key(), b.value());
    for (const auto& [k, v] : by_name) {
        if (!used.count(k)) report.unused.push_back(k);
    }
    return report;
}

StateDict state_dict_of(torch::nn::Module& module) {
    StateDict sd;
    for (const auto& p : module.named_parameters()) sd[p.key()] = p.value().detach().clone();
    for (const auto& b : module.named_buffers()) sd[b.key()] = b.value().detach().clone();
    return sd;
}

}  // namespace hemoscan

// Starting weights from other tools (`pretrained`, issue 27): a PyTorch state dict mapped by name.
#include <regex>

#include "hemoscan/models/pretrained.hpp"
#include "train/optimizer.hpp"

namespace hemoscan::train_detail {

namespace {

// torchvision names its files <arch>-<first hex digits of the SHA-256>.pth (torch.hub's check_hash):
// the digits found in the name, or empty.
std::string hash_in_name(const std::filesystem::path& file) {
    static const std::regex pattern(R"(^.+-([0-9a-f]{8,64})\.(pth|pt|safetensors)$)");
    std::smatch m;
    const std::string name = file.filename().string();
    return std::regex_match(name, m, pattern) ? m[1].str() : std::string();
}

}  // namespace

nlohmann::json pretrained_weights(const std::string& file, const std::string& arch, torch::nn::Module& model) {
    nlohmann::json info = {{"pretrained", file}};
    const std::string expected = hash_in_name(file);
    if (!expected.empty()) {
        const std::string actual = sha256_file(file);
        if (actual.rfind(expected, 0) != 0) {
            throw InputError(file + ": SHA-256 " + actual + " does not start with " + expected +
                             ", the hash its name gives (a damaged or different download)");
        }
        info["sha256"] = actual;
    }
    const WeightReport report = load_state_dict(model, read_weights(file));
    size_t total = 0, taken = 0;
    std::map<std::string, bool> fit;
    for (const auto& k : report.loaded) fit[k] = true;
    for (const auto& k : report.adapted) fit[k] = true;
    auto count = [&](const torch::OrderedDict<std::string, torch::Tensor>& tensors) {
        for (const auto& t : tensors) {
            total += static_cast<size_t>(t.value().numel());
            if (fit.count(t.key())) taken += static_cast<size_t>(t.value().numel());
        }
    };
    count(model.named_parameters());
    count(model.named_buffers());
    if (2 * taken < total) {
        throw InputError(file + ": only " + std::to_string(taken) + " of this '" + arch + "' model's " +
                         std::to_string(total) + " weights are in it by name and shape: the weights of another "
                         "architecture? (" + std::to_string(report.unused.size()) + " tensors of the file unused)");
    }
    std::string fresh;
    for (const auto& k : report.fresh) fresh += (fresh.empty() ? "" : ", ") + k;
    logger().info("`pretrained` {}: {} tensors taken ({} of {} values){}{}", file,
                  report.loaded.size() + report.adapted.size(), taken, total,
                  report.adapted.empty() ? std::string() : "; first conv adapted to the input channels",
                  fresh.empty() ? std::string() : "; initialised fresh: " + fresh);
    info.update(report.to_json());
    info["values_taken"] = taken;
    info["values"] = total;
    return info;
}

}  // namespace hemoscan::train_detail

#include "hemoscan/models/serialize.hpp"

#include <map>
#include <sstream>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/util/fs.hpp"

namespace hemoscan {

namespace {

constexpr const char* kFormatKey = "hemoscan_format";
constexpr const char* kMetaKey = "hemoscan_meta";
constexpr const char* kWeightsKey = "weights";

// Shapes of every parameter and buffer by qualified name: Module::load copies tensors without
// checking that they fit, so load_model() compares these before and after.
std::map<std::string, std::vector<int64_t>> shapes(const torch::nn::Module& m) {
    std::map<std::string, std::vector<int64_t>> out;
    for (const auto& p : m.named_parameters()) out[p.key()] = p.value().sizes().vec();
    for (const auto& b : m.named_buffers()) out[b.key()] = b.value().sizes().vec();
    return out;
}

// First line of a c10::Error message (the rest is a C++ backtrace).
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

void save_model(const std::filesystem::path& path, const ClassifierImpl& model, const nlohmann::json& meta) {
    if (!meta.is_null() && !meta.is_object())
        throw UsageError("save_model: meta must be a JSON object, got " + std::string(meta.type_name()));
    nlohmann::json full = meta.is_null() ? nlohmann::json::object() : meta;
    full["model"] = model_config_to_json(model.config());

    torch::serialize::OutputArchive archive;
    archive.write(kFormatKey, c10::IValue(static_cast<int64_t>(kModelFormatVersion)));
    archive.write(kMetaKey, c10::IValue(full.dump()));
    torch::serialize::OutputArchive weights;
    model.save(weights);
    archive.write(kWeightsKey, weights);
    write_atomic_with(path, [&](const fs::path& tmp) {
        try {
            archive.save_to(tmp.string());
        } catch (const c10::Error& e) {
            throw Error(path.string() + ": cannot write model file: " + first_line(e.what()));
        }
    });
}

LoadedModel load_model(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) throw InputError(name + ": model file not found");
    if (fs::file_size(path, ec) == 0) throw InputError(name + ": empty file, not a hemoscan model");

    torch::serialize::InputArchive archive;
    try {
        archive.load_from(name);
    } catch (const c10::Error& e) {
        throw InputError(name + ": not a hemoscan model file (" + first_line(e.what()) + ")");
    }

    LoadedModel loaded;
    try {
        c10::IValue format, meta;
        if (!archive.try_read(kFormatKey, format) || !format.isInt() || !archive.try_read(kMetaKey, meta) ||
            !meta.isString())
            throw InputError(name + ": a LibTorch archive but not a hemoscan model file (no hemoscan_meta)");
        if (format.toInt() < 1 || format.toInt() > kModelFormatVersion)
            throw InputError(name + ": model format version " + std::to_string(format.toInt()) +
                             " is not supported (this build reads up to " + std::to_string(kModelFormatVersion) + ")");
        loaded.meta = nlohmann::json::parse(meta.toStringRef());
        if (!loaded.meta.is_object() || !loaded.meta.contains("model"))
            throw InputError(name + ": model meta has no \"model\" config");
        loaded.model = create_model(model_config_from_json(loaded.meta.at("model")));

        const auto expected = shapes(*loaded.model);
        torch::serialize::InputArchive weights;
        if (!archive.try_read(kWeightsKey, weights)) throw InputError(name + ": model file has no weights");
        loaded.model->load(weights);
        if (shapes(*loaded.model) != expected)
            throw InputError(name + ": weights do not fit the '" + loaded.model->config().name + "' architecture");
    } catch (const InputError&) {
        throw;
    } catch (const Error& e) {  // e.g. UsageError from a config in the file: the file is at fault
        throw InputError(name + ": " + e.what());
    } catch (const nlohmann::json::exception& e) {
        throw InputError(name + ": bad model meta JSON (" + e.what() + ")");
    } catch (const c10::Error& e) {
        throw InputError(name + ": cannot load weights (" + first_line(e.what()) + ")");
    }
    loaded.model->eval();
    return loaded;
}

}  // namespace hemoscan

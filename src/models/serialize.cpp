#include "hemoscan/models/serialize.hpp"

#include <map>
#include <sstream>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/segmenter.hpp"
#include "hemoscan/models/study_model.hpp"
#include "hemoscan/util/fs.hpp"

namespace hemoscan {

namespace {

constexpr const char* kFormatKey = "hemoscan_format";
constexpr const char* kMetaKey = "hemoscan_meta";
constexpr const char* kWeightsKey = "weights";
constexpr const char* kSegmentTask = "segment";
constexpr const char* kStudyWeightsKey = "study_weights";

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

// Writes meta (with "model" and "task" set) and the module's weights to `path` atomically.
void write_archive(const std::filesystem::path& path, const torch::nn::Module& model, nlohmann::json full,
                   const torch::nn::Module* study = nullptr) {
    torch::serialize::OutputArchive archive;
    archive.write(kFormatKey, c10::IValue(static_cast<int64_t>(kModelFormatVersion)));
    archive.write(kMetaKey, c10::IValue(full.dump()));
    torch::serialize::OutputArchive weights;
    model.save(weights);
    archive.write(kWeightsKey, weights);
    if (study) {
        torch::serialize::OutputArchive study_weights;
        study->save(study_weights);
        archive.write(kStudyWeightsKey, study_weights);
    }
    write_atomic_with(path, [&](const fs::path& tmp) {
        try {
            archive.save_to(tmp.string());
        } catch (const c10::Error& e) {
            throw Error(path.string() + ": cannot write model file: " + first_line(e.what()));
        }
    });
}

nlohmann::json checked_meta(const char* fn, const nlohmann::json& meta) {
    if (!meta.is_null() && !meta.is_object())
        throw UsageError(std::string(fn) + ": meta must be a JSON object, got " + std::string(meta.type_name()));
    return meta.is_null() ? nlohmann::json::object() : meta;
}

// An opened model file: its meta (an object with a "model" key) and the archive for the weights.
struct OpenedFile {
    torch::serialize::InputArchive archive;
    nlohmann::json meta;
    std::string task;  // meta["task"], "classify" when absent (files written before segmentation)
};

// Runs `fn`, turning every error but InputError into an InputError naming the file.
template <typename Fn>
auto blaming_file(const std::string& name, Fn&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const InputError&) {
        throw;
    } catch (const Error& e) {  // e.g. UsageError from a config in the file: the file is at fault
        throw InputError(name + ": " + e.what());
    } catch (const nlohmann::json::exception& e) {
        throw InputError(name + ": bad model meta JSON (" + e.what() + ")");
    } catch (const c10::Error& e) {
        throw InputError(name + ": cannot load weights (" + first_line(e.what()) + ")");
    }
}

void open_file(const std::filesystem::path& path, OpenedFile& out) {
    const std::string name = path.string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) throw InputError(name + ": model file not found");
    if (fs::file_size(path, ec) == 0) throw InputError(name + ": empty file, not a hemoscan model");
    try {
        out.archive.load_from(name);
    } catch (const c10::Error& e) {
        throw InputError(name + ": not a hemoscan model file (" + first_line(e.what()) + ")");
    }
    blaming_file(name, [&] {
        c10::IValue format, meta;
        if (!out.archive.try_read(kFormatKey, format) || !format.isInt() || !out.archive.try_read(kMetaKey, meta) ||
            !meta.isString())
            throw InputError(name + ": a LibTorch archive but not a hemoscan model file (no hemoscan_meta)");
        if (format.toInt() < 1 || format.toInt() > kModelFormatVersion)
            throw InputError(name + ": model format version " + std::to_string(format.toInt()) +
                             " is not supported (this build reads up to " + std::to_string(kModelFormatVersion) + ")");
        out.meta = nlohmann::json::parse(meta.toStringRef());
        if (!out.meta.is_object() || !out.meta.contains("model"))
            throw InputError(name + ": model meta has no \"model\" config");
        out.task = "classify";
        if (out.meta.contains("task")) {
            if (!out.meta.at("task").is_string())
                throw InputError(name + ": model meta \"task\" must be a string, got " + out.meta.at("task").dump());
            out.task = out.meta.at("task").get<std::string>();
            if (out.task != "classify" && out.task != kSegmentTask)
                throw InputError(name + ": unknown model task '" + out.task + "' (known: classify, segment)");
        }
    });
}

// Loads the weights of `file` into `model`, checking that every shape fits.
void load_weights(const std::string& name, OpenedFile& file, torch::nn::Module& model, const std::string& arch,
                  const char* key = kWeightsKey) {
    blaming_file(name, [&] {
        const auto expected = shapes(model);
        torch::serialize::InputArchive weights;
        if (!file.archive.try_read(key, weights)) throw InputError(name + ": model file has no " + key);
        model.load(weights);
        if (shapes(model) != expected)
            throw InputError(name + ": weights do not fit the '" + arch + "' architecture");
    });
}

}  // namespace

void save_model(const std::filesystem::path& path, const ClassifierImpl& model, const nlohmann::json& meta) {
    nlohmann::json full = checked_meta("save_model", meta);
    full["model"] = model_config_to_json(model.config());
    full["task"] = "classify";
    write_archive(path, model, std::move(full));
}

void save_segmenter(const std::filesystem::path& path, const SegmenterImpl& model, const nlohmann::json& meta) {
    nlohmann::json full = checked_meta("save_segmenter", meta);
    full["model"] = seg_model_config_to_json(model.config());
    full["task"] = kSegmentTask;
    write_archive(path, model, std::move(full));
}

void save_study_model(const std::filesystem::path& path, const ClassifierImpl& slice_model, const nlohmann::json& meta,
                      const StudyModelImpl& study) {
    nlohmann::json full = checked_meta("save_study_model", meta);
    if (full.contains("study") && !full["study"].is_object()) throw UsageError("save_study_model: meta \"study\" must be an object");
    full["model"] = model_config_to_json(slice_model.config());
    full["task"] = "classify";
    full["study"]["model"] = study_model_config_to_json(study.config());
    write_archive(path, slice_model, std::move(full), &study);
}

std::shared_ptr<StudyModelImpl> load_study_model(const std::filesystem::path& path) {
    const std::string name = path.string();
    OpenedFile file;
    open_file(path, file);
    if (!file.meta.contains("study") || !file.meta["study"].is_object()) {
        throw InputError(name + ": a slice model without a study model (train one with `--task study`)");
    }
    std::shared_ptr<StudyModelImpl> model;
    blaming_file(name, [&] {
        model = std::make_shared<StudyModelImpl>(study_model_config_from_json(file.meta["study"].at("model")));
    });
    load_weights(name, file, *model, "study-gru", kStudyWeightsKey);
    model->eval();
    return model;
}

nlohmann::json read_model_meta(const std::filesystem::path& path) {
    OpenedFile file;
    open_file(path, file);
    return file.meta;
}

LoadedModel load_model(const std::filesystem::path& path) {
    const std::string name = path.string();
    OpenedFile file;
    open_file(path, file);
    if (file.task != "classify")
        throw InputError(name + ": a segmentation model, not a classifier (use it with `hemoscan segment`)");
    LoadedModel loaded;
    loaded.meta = file.meta;
    blaming_file(name, [&] { loaded.model = create_model(model_config_from_json(loaded.meta.at("model"))); });
    load_weights(name, file, *loaded.model, loaded.model->config().name);
    loaded.model->eval();
    return loaded;
}

LoadedSegmenter load_segmenter(const std::filesystem::path& path) {
    const std::string name = path.string();
    OpenedFile file;
    open_file(path, file);
    if (file.task != kSegmentTask)
        throw InputError(name + ": a classification model, not a segmentation model (use it with `hemoscan predict`)");
    LoadedSegmenter loaded;
    loaded.meta = file.meta;
    blaming_file(name, [&] { loaded.model = create_segmenter(seg_model_config_from_json(loaded.meta.at("model"))); });
    load_weights(name, file, *loaded.model, loaded.model->config().name);
    loaded.model->eval();
    return loaded;
}

}  // namespace hemoscan

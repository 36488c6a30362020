// The preprocessing's JSON form in model files (preprocess.hpp): one writer, one reader.
#include <nlohmann/json.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

namespace hemoscan {

nlohmann::json preprocess_to_json(const PreprocessOptions& p, const std::string& window_spec,
                                  const std::string& modality) {
    nlohmann::json windows = nlohmann::json::array();
    for (const auto& w : p.windows) windows.push_back({{"name", w.name}, {"level", w.level}, {"width", w.width}});
    const char* norm = p.normalization == Normalization::None       ? "none"
                       : p.normalization == Normalization::ZScore   ? "zscore"
                       : p.normalization == Normalization::ImageNet ? "imagenet"
                                                                    : "unit";
    return {{"windows", windows},        {"window_spec", window_spec},
            {"size", p.resize.width},    {"keep_aspect", p.resize.keep_aspect},
            {"median", p.median_kernel}, {"normalization", norm},
            {"crop_head", p.crop_head},  {"modality", modality},
            {"sequences", p.sequences}};
}

PreprocessOptions preprocess_from_json(const nlohmann::json& j) {
    PreprocessOptions p;
    if (!j.is_object()) return p;
    std::string key;
    try {
        key = "windows";
        if (j.contains("windows")) {
            p.windows.clear();
            for (const auto& w : j.at("windows")) {
                p.windows.push_back(
                    Window{w.at("name").get<std::string>(), w.at("level").get<double>(), w.at("width").get<double>()});
            }
        }
        key = "size";
        const int size = j.value("size", p.resize.width);
        key = "keep_aspect";
        p.resize = ResizeOptions{size, size, j.value("keep_aspect", false), 0.f};
        key = "median";
        p.median_kernel = j.value("median", 0);
        key = "normalization";
        p.normalization = parse_normalization(j.value("normalization", std::string("unit")));
        key = "crop_head";
        p.crop_head = j.value("crop_head", false);
        key = "modality";
        p.mr = parse_modality_policy(j.value("modality", std::string("ct"))) == ModalityPolicy::MrOnly;
        key = "sequences";
        p.sequences = j.value("sequences", std::vector<std::string>{});
    } catch (const nlohmann::json::exception& e) {
        throw UsageError("preprocess." + key + ": " + e.what());
    }
    return p;
}

}  // namespace hemoscan

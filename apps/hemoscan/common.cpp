#include "common.hpp"

#include "hemoscan/error.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan::cli {

ModalityPolicy parse_modality(const std::string& name) {
    const std::string m = to_lower(name);
    if (m == "ct") return ModalityPolicy::CtOnly;
    if (m == "mr" || m == "mri") return ModalityPolicy::CtOrMr;
    if (m == "any") return ModalityPolicy::Any;
    throw UsageError("unknown --modality '" + name + "' (ct, mr, any)");
}

std::vector<std::string> parse_list(const std::string& csv) {
    std::vector<std::string> out;
    for (const auto& item : split(csv, ',')) {
        auto t = trim(item);
        if (!t.empty()) out.push_back(t);
    }
    return out;
}

}  // namespace hemoscan::cli

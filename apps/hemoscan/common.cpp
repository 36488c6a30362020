#include "common.hpp"

#include "hemoscan/error.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan::cli {

std::vector<std::string> parse_list(const std::string& csv) {
    std::vector<std::string> out;
    for (const auto& item : split(csv, ',')) {
        auto t = trim(item);
        if (!t.empty()) out.push_back(t);
    }
    return out;
}

}  // namespace hemoscan::cli

#include "hemoscan/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "hemoscan/error.hpp"

namespace hemoscan {

spdlog::logger& logger() {
    static std::shared_ptr<spdlog::logger> instance = [] {
        auto l = spdlog::stderr_color_mt("hemoscan");
        l->set_pattern("%^[%l]%$ %v");
        l->set_level(spdlog::level::info);
        return l;
    }();
    return *instance;
}

void set_log_level(const std::string& level) {
    auto lvl = spdlog::level::from_str(level);
    // from_str maps unknown names to "off"; only accept "off" when it was asked for.
    if (lvl == spdlog::level::off && level != "off") {
        throw UsageError("unknown log level '" + level + "' (trace, debug, info, warn, error, off)");
    }
    logger().set_level(lvl);
}

}  // namespace hemoscan

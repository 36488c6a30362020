#pragma once
// The one logger of the library. Library code never writes to stdout/stderr directly.
#include <spdlog/spdlog.h>

#include <string>

namespace hemoscan {

// The shared logger ("hemoscan"), writing to stderr.
spdlog::logger& logger();

// "trace", "debug", "info", "warn", "error", "off". Throws UsageError on an unknown level.
void set_log_level(const std::string& level);

}  // namespace hemoscan

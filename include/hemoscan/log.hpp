#pragma once
// The one logger of the library. Library code never writes to stdout/stderr directly.
#include <spdlog/spdlog.h>

#include <string>

namespace hemoscan {

// The shared logger ("hemoscan"), writing to stderr.
spdlog::logger& logger();

// "trace", "debug", "info", "warn", "error", "off". Throws UsageError on an unknown level.
void set_log_level(const std::string& level);

// While alive, messages that this thread logs below `below` are dropped. The server wraps an upload's
// analysis in one: the library's warnings name the uploader's files and go into the result, not the log.
class ScopedLogQuiet {
public:
    explicit ScopedLogQuiet(spdlog::level::level_enum below);
    ~ScopedLogQuiet();
    ScopedLogQuiet(const ScopedLogQuiet&) = delete;
    ScopedLogQuiet& operator=(const ScopedLogQuiet&) = delete;

private:
    int previous_;
};

}  // namespace hemoscan

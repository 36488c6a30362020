#include "hemoscan/log.hpp"

#include <algorithm>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "hemoscan/error.hpp"
#include "hemoscan/log_format.hpp"

namespace hemoscan {

namespace {

// The message (%v) through the front end's rewrite, as the pattern's %* flag.
class RewrittenMessage : public spdlog::custom_flag_formatter {
public:
    explicit RewrittenMessage(std::function<std::string(const std::string&)> rewrite) : rewrite_(std::move(rewrite)) {}
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
        const std::string shown = rewrite_(std::string(msg.payload.data(), msg.payload.size()));
        dest.append(shown.data(), shown.data() + shown.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<RewrittenMessage>(rewrite_);
    }

private:
    std::function<std::string(const std::string&)> rewrite_;
};

constexpr const char* kPattern = "%^[%l]%$ %v";

// Messages of this thread below this level are dropped (ScopedLogQuiet).
thread_local int t_quiet_below = spdlog::level::trace;

class QuietableStderrSink : public spdlog::sinks::stderr_color_sink_mt {
public:
    void log(const spdlog::details::log_msg& msg) override {
        if (static_cast<int>(msg.level) < t_quiet_below) return;
        spdlog::sinks::stderr_color_sink_mt::log(msg);
    }
};

}  // namespace

ScopedLogQuiet::ScopedLogQuiet(spdlog::level::level_enum below) : previous_(t_quiet_below) {
    t_quiet_below = std::max(previous_, static_cast<int>(below));
}

ScopedLogQuiet::~ScopedLogQuiet() { t_quiet_below = previous_; }

void set_log_rewrite(std::function<std::string(const std::string&)> rewrite) {
    if (!rewrite) {
        logger().set_pattern(kPattern);
        return;
    }
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<RewrittenMessage>('*', std::move(rewrite)).set_pattern("%^[%l]%$ %*");
    logger().set_formatter(std::move(formatter));
}

spdlog::logger& logger() {
    static std::shared_ptr<spdlog::logger> instance = [] {
        auto l = std::make_shared<spdlog::logger>("hemoscan", std::make_shared<QuietableStderrSink>());
        spdlog::register_logger(l);
        l->set_pattern(kPattern);
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

#include "hemoscan/log.hpp"

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

}  // namespace

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
        auto l = spdlog::stderr_color_mt("hemoscan");
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

#pragma once
// Captures what the library logs through hemoscan::logger() while it lives (at `level` and above), to
// check what a log line may carry (issue 28: no UIDs, patient identifiers or absolute paths).
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>

#include "hemoscan/log.hpp"

namespace hemoscan::test {

class LogCapture {
public:
    explicit LogCapture(spdlog::level::level_enum level = spdlog::level::debug)
        : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)), saved_level_(logger().level()) {
        sink_->set_pattern("[%l] %v");
        logger().sinks().push_back(sink_);
        logger().set_level(level);
    }
    ~LogCapture() {
        auto& sinks = logger().sinks();
        sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
        logger().set_level(saved_level_);
    }
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;

    std::string text() const { return out_.str(); }

private:
    std::ostringstream out_;
    std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
    spdlog::level::level_enum saved_level_;
};

}  // namespace hemoscan::test

#pragma once
// A terminal progress bar on stderr. On a terminal it redraws in place; otherwise (CI logs, pipes)
// it prints a line at every 10% so logs stay short.
#include <chrono>
#include <cstddef>
#include <string>

namespace hemoscan::cli {

class ProgressBar {
public:
    ProgressBar(std::string label, size_t total);
    ~ProgressBar();
    // Sets the number of finished units; `status` is shown after the bar (e.g. "loss 0.31").
    void update(size_t done, const std::string& status = "");
    // Completes the bar (prints the final state and a newline once).
    void finish(const std::string& status = "");

private:
    void draw(const std::string& status, bool final);
    std::string label_;
    size_t total_;
    size_t done_ = 0;
    bool tty_;
    bool finished_ = false;
    int last_decile_ = -1;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace hemoscan::cli

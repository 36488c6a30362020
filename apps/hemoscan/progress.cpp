#include "progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace hemoscan::cli {

namespace {
std::string format_seconds(double s) {
    char buf[32];
    int t = static_cast<int>(s + 0.5);
    if (t >= 3600) {
        std::snprintf(buf, sizeof buf, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    } else {
        std::snprintf(buf, sizeof buf, "%02d:%02d", t / 60, t % 60);
    }
    return buf;
}
}  // namespace

ProgressBar::ProgressBar(std::string label, size_t total)
    : label_(std::move(label)), total_(total), tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() {
    // A bar abandoned by an exception ends its line so the error message starts on a fresh one.
    if (!finished_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

void ProgressBar::update(size_t done, const std::string& status) {
    done_ = done;
    auto now = std::chrono::steady_clock::now();
    if (tty_) {
        if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
        last_draw_ = now;
        draw(status, false);
    } else {
        int decile = total_ ? static_cast<int>(10 * done_ / total_) : 10;
        if (decile != last_decile_ && decile < 10) {
            last_decile_ = decile;
            draw(status, false);
        }
    }
}

void ProgressBar::finish(const std::string& status) {
    if (finished_) return;
    done_ = total_;
    draw(status, true);
    finished_ = true;
}

void ProgressBar::draw(const std::string& status, bool final) {
    const int width = 30;
    double frac = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
    int filled = static_cast<int>(frac * width + 0.5);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(width - filled), '-');
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string timing = format_seconds(elapsed);
    if (!final && done_ > 0 && done_ < total_) {
        timing += " ETA " + format_seconds(elapsed / static_cast<double>(done_) * static_cast<double>(total_ - done_));
    }
    std::fprintf(stderr, "%s%s [%s] %zu/%zu %s%s%s%s", tty_ ? "\r\033[K" : "", label_.c_str(), bar.c_str(), done_,
                 total_, timing.c_str(), status.empty() ? "" : "  ", status.c_str(),
                 (final || !tty_) ? "\n" : "");
    std::fflush(stderr);
}

}  // namespace hemoscan::cli

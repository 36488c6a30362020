// CT windows: named presets, "L,W" specs, and the exact linear map HU -> 0..1.
#include <charconv>
#include <cmath>
#include <opencv2/core.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

Window window_brain() { return {"brain", 40, 80}; }
Window window_subdural() { return {"subdural", 80, 200}; }
Window window_bone() { return {"bone", 600, 2800}; }

namespace {

// Whole-string, locale-independent number parse; false on anything left over.
bool parse_double(const std::string& text, double& value) {
    const std::string t = trim(text);
    if (t.empty()) return false;
    const char* begin = t.data();
    if (*begin == '+') ++begin;  // from_chars rejects a leading '+', users may write it
    const char* end = t.data() + t.size();
    auto [ptr, ec] = std::from_chars(begin, end, value);
    return ec == std::errc() && ptr == end && std::isfinite(value);
}

const char* kWindowHelp = "expected brain, subdural, bone, rgb or \"LEVEL,WIDTH\" (e.g. 50,150)";

}  // namespace

std::vector<Window> parse_windows(const std::string& spec) {
    const std::string s = to_lower(trim(spec));
    if (s == "brain") return {window_brain()};
    if (s == "subdural") return {window_subdural()};
    if (s == "bone") return {window_bone()};
    if (s == "rgb") return {window_brain(), window_subdural(), window_bone()};
    const auto parts = split(s, ',');
    if (parts.size() != 2) throw UsageError("unknown window '" + spec + "': " + kWindowHelp);
    Window w;
    if (!parse_double(parts[0], w.level) || !parse_double(parts[1], w.width)) {
        throw UsageError("bad window '" + spec + "': " + kWindowHelp);
    }
    if (w.width <= 0) throw UsageError("bad window '" + spec + "': the width must be > 0");
    w.name = trim(parts[0]) + "," + trim(parts[1]);
    return {w};
}

cv::Mat apply_window(const cv::Mat& hu, const Window& window) {
    if (hu.channels() != 1) throw UsageError("apply_window: expects a one-channel HU image");
    if (!(window.width > 0)) throw UsageError("apply_window: window '" + window.name + "' has width <= 0");
    cv::Mat src;
    if (hu.depth() == CV_32F) {
        src = hu;
    } else {
        hu.convertTo(src, CV_32F);
    }
    const double low = window.level - window.width / 2;
    cv::Mat out(src.size(), CV_32FC1);
    for (int y = 0; y < src.rows; ++y) {
        const float* in = src.ptr<float>(y);
        float* o = out.ptr<float>(y);
        for (int x = 0; x < src.cols; ++x) {
            // Computed in double so that values on the window's grid (e.g. 20 HU in 40/80) are exact.
            const double v = (static_cast<double>(in[x]) - low) / window.width;
            o[x] = v >= 1 ? 1.f : (v > 0 ? static_cast<float>(v) : 0.f);  // NaN -> 0 (treated as air)
        }
    }
    return out;
}

cv::Mat apply_windows(const cv::Mat& hu, const std::vector<Window>& windows) {
    if (windows.empty()) throw UsageError("apply_windows: no window given");
    if (windows.size() == 1) return apply_window(hu, windows.front());
    std::vector<cv::Mat> channels;
    channels.reserve(windows.size());
    for (const auto& w : windows) channels.push_back(apply_window(hu, w));
    cv::Mat out;
    cv::merge(channels, out);
    return out;
}

cv::Mat to_uint8(const cv::Mat& unit) {
    cv::Mat src;
    if (unit.depth() == CV_32F) {
        src = unit;
    } else {
        unit.convertTo(src, CV_32F);
    }
    cv::Mat out(src.size(), CV_8UC(src.channels()));
    const int n = src.cols * src.channels();
    for (int y = 0; y < src.rows; ++y) {
        const float* in = src.ptr<float>(y);
        uchar* o = out.ptr<uchar>(y);
        for (int i = 0; i < n; ++i) {
            // std::lround (half away from zero), not cvRound's half-to-even, as documented.
            const float v = in[i] >= 1.f ? 1.f : (in[i] > 0.f ? in[i] : 0.f);
            o[i] = static_cast<uchar>(std::lround(static_cast<double>(v) * 255.0));
        }
    }
    return out;
}

}  // namespace hemoscan

// MR intensities: robust percentile scaling of magnitude images, fixed scaling of phase images.
#include <opencv2/core.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace {

constexpr double kPi = 3.14159265358979323846;

// The q-quantile (0..1) of `values` (reordered).
float quantile(std::vector<float>& values, double q) {
    const size_t k = static_cast<size_t>(q * static_cast<double>(values.size() - 1));
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
    return values[k];
}

std::vector<float> finite_values(const cv::Mat& f, float above) {
    std::vector<float> v;
    v.reserve(f.total());
    for (int r = 0; r < f.rows; ++r) {
        const float* p = f.ptr<float>(r);
        for (int c = 0; c < f.cols; ++c) {
            if (std::isfinite(p[c]) && p[c] > above) v.push_back(p[c]);
        }
    }
    return v;
}

}  // namespace

bool is_phase_sequence(const std::string& name) { return to_lower(name).find("phase") != std::string::npos; }

cv::Mat normalize_mr(const cv::Mat& channel, bool phase, bool eight_bit) {
    cv::Mat f;
    channel.convertTo(f, CV_32F);
    cv::patchNaNs(f, 0);
    cv::Mat out;
    if (phase) {
        double lo = 0, hi = 0;
        cv::minMaxLoc(f, &lo, &hi);
        if (eight_bit) {
            f.convertTo(out, CV_32F, 1.0 / 255.0);
        } else if (lo >= -kPi - 1e-3 && hi <= kPi + 1e-3) {
            f.convertTo(out, CV_32F, 0.5 / kPi, 0.5);  // radians
        } else if (lo >= 0 && hi <= 4095) {
            f.convertTo(out, CV_32F, 1.0 / 4095.0);  // stored values without their rescale
        } else if (lo >= -4096 && hi <= 4096) {
            f.convertTo(out, CV_32F, 0.5 / 4096.0, 0.5);  // Siemens: -4096..4094 for -pi..pi
        } else {
            out = f.clone();
            if (hi > lo) out = (f - lo) / (hi - lo);
        }
        return out;
    }
    std::vector<float> all = finite_values(f, -std::numeric_limits<float>::infinity());
    if (all.empty()) return cv::Mat::zeros(f.size(), CV_32F);
    const float p99 = quantile(all, 0.99);
    std::vector<float> head = finite_values(f, 0.1f * p99);
    if (head.size() < 16) head = std::move(all);
    const float lo = quantile(head, 0.005), hi = quantile(head, 0.995);
    if (!(hi > lo)) return cv::Mat::zeros(f.size(), CV_32F);
    out = (f - lo) / (hi - lo);
    cv::min(cv::max(out, 0.0), 1.0, out);
    return out;
}

}  // namespace hemoscan

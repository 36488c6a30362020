// Resizing, median denoising and intensity normalisation.
#include <algorithm>
#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "hemoscan/error.hpp"
#include "hemoscan/util/channels.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace {

// Where the scaled content goes in the target: image and mask share it so that they stay aligned.
struct ResizeLayout {
    cv::Size scaled;
    int left = 0, top = 0, right = 0, bottom = 0;
};

ResizeLayout resize_layout(cv::Size source, const ResizeOptions& options) {
    if (options.width <= 0 || options.height <= 0) {
        throw UsageError("resize: impossible size " + std::to_string(options.width) + "x" +
                         std::to_string(options.height));
    }
    if (source.empty()) throw UsageError("resize: empty image");
    ResizeLayout layout;
    if (!options.keep_aspect) {
        layout.scaled = {options.width, options.height};
        return layout;
    }
    const double scale = std::min(static_cast<double>(options.width) / source.width,
                                  static_cast<double>(options.height) / source.height);
    layout.scaled.width = std::clamp(static_cast<int>(std::lround(source.width * scale)), 1, options.width);
    layout.scaled.height = std::clamp(static_cast<int>(std::lround(source.height * scale)), 1, options.height);
    layout.left = (options.width - layout.scaled.width) / 2;
    layout.right = options.width - layout.scaled.width - layout.left;
    layout.top = (options.height - layout.scaled.height) / 2;
    layout.bottom = options.height - layout.scaled.height - layout.top;
    return layout;
}

cv::Mat place(const cv::Mat& scaled, const ResizeLayout& layout, double pad) {
    if (layout.left == 0 && layout.right == 0 && layout.top == 0 && layout.bottom == 0) return scaled;
    return per_channel(scaled, [&](const cv::Mat& c) {
        cv::Mat out;
        cv::copyMakeBorder(c, out, layout.top, layout.bottom, layout.left, layout.right, cv::BORDER_CONSTANT,
                           cv::Scalar::all(pad));
        return out;
    });
}

// Exact median of a k x k window (replicated border, as cv::medianBlur) on one float channel.
// OpenCV's medianBlur takes floats only up to k = 5.
cv::Mat median_direct(const cv::Mat& channel, int k) {
    const int r = k / 2;
    cv::Mat padded;
    cv::copyMakeBorder(channel, padded, r, r, r, r, cv::BORDER_REPLICATE);
    cv::Mat out(channel.size(), CV_32FC1);
    const int mid = (k * k) / 2;
    cv::parallel_for_(cv::Range(0, channel.rows), [&](const cv::Range& rows) {
        std::vector<float> window(static_cast<size_t>(k) * k);
        for (int y = rows.start; y < rows.end; ++y) {
            float* o = out.ptr<float>(y);
            for (int x = 0; x < channel.cols; ++x) {
                size_t n = 0;
                for (int dy = 0; dy < k; ++dy) {
                    const float* in = padded.ptr<float>(y + dy) + x;
                    for (int dx = 0; dx < k; ++dx) window[n++] = in[dx];
                }
                std::nth_element(window.begin(), window.begin() + mid, window.end());
                o[x] = window[mid];
            }
        }
    });
    return out;
}

}  // namespace

cv::Mat resize_image(const cv::Mat& image, const ResizeOptions& options) {
    const ResizeLayout layout = resize_layout(image.size(), options);
    cv::Mat scaled;
    if (layout.scaled == image.size()) {
        scaled = image.clone();
    } else {
        const bool shrinking = layout.scaled.width <= image.cols && layout.scaled.height <= image.rows;
        scaled = per_channel(image, [&](const cv::Mat& c) {
            cv::Mat out;
            cv::resize(c, out, layout.scaled, 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
            return out;
        });
    }
    return place(scaled, layout, options.pad_value);
}

cv::Rect resize_content(cv::Size source, const ResizeOptions& options) {
    const ResizeLayout layout = resize_layout(source, options);
    return {layout.left, layout.top, layout.scaled.width, layout.scaled.height};
}

cv::Mat resize_mask(const cv::Mat& mask, const ResizeOptions& options) {
    const ResizeLayout layout = resize_layout(mask.size(), options);
    cv::Mat scaled;
    if (layout.scaled == mask.size()) {
        scaled = mask.clone();
    } else {
        // NEAREST_EXACT samples pixel centres like the image's linear/area resize (plain NEAREST is
        // shifted by half a pixel), so labels stay on the anatomy they mark.
        cv::resize(mask, scaled, layout.scaled, 0, 0, cv::INTER_NEAREST_EXACT);
    }
    return place(scaled, layout, 0);
}

cv::Mat median_filter(const cv::Mat& image, int k) {
    if (k <= 1) return image;
    if (k % 2 == 0) throw UsageError("median filter: the kernel size must be odd, got " + std::to_string(k));
    if (image.empty()) return image;
    cv::Mat out;
    const int cn = image.channels();
    if ((cn == 1 || cn == 3 || cn == 4) && (image.depth() == CV_8U || (k <= 5 && image.depth() == CV_32F))) {
        cv::medianBlur(image, out, k);  // 1, 3 or 4 channels at these depths
        return out;
    }
    cv::Mat src;
    image.convertTo(src, CV_32F);
    std::vector<cv::Mat> channels;
    cv::split(src, channels);
    for (auto& c : channels) {
        if (k <= 5) {
            cv::Mat filtered;
            cv::medianBlur(c, filtered, k);
            c = filtered;
        } else {
            c = median_direct(c, k);
        }
    }
    cv::merge(channels, out);
    return out;
}

namespace {
void imagenet_standardize(cv::Mat& unit) {
    static const double mean[3] = {0.485, 0.456, 0.406}, stddev[3] = {0.229, 0.224, 0.225};
    std::vector<cv::Mat> channels;
    cv::split(unit, channels);
    const bool rgb = channels.size() % 3 == 0;
    for (size_t c = 0; c < channels.size(); ++c) {
        const double m = rgb ? mean[c % 3] : 0.449, s = rgb ? stddev[c % 3] : 0.226;
        channels[c].convertTo(channels[c], CV_32F, 1.0 / s, -m / s);
    }
    cv::merge(channels, unit);
}
}  // namespace

cv::Mat normalize_image(const cv::Mat& image, Normalization mode) {
    cv::Mat out;
    image.convertTo(out, CV_32F);
    if (out.empty() || mode == Normalization::None) return out;
    if (mode == Normalization::UnitRange || mode == Normalization::ImageNet) {
        double lo = 0, hi = 0;
        cv::minMaxLoc(out.reshape(1), &lo, &hi);
        if (hi > lo) {
            // Divided in double (not convertTo's x * a + b in float) so that min and max land exactly on 0 and 1.
            const double range = hi - lo;
            cv::Mat flat = out.reshape(1);  // forEach<float> visits only the first channel of a multi-channel Mat
            flat.forEach<float>([lo, range](float& v, const int*) { v = static_cast<float>((v - lo) / range); });
        } else {
            out.setTo(cv::Scalar::all(0));
        }
        if (mode == Normalization::ImageNet) imagenet_standardize(out);
        return out;
    }
    std::vector<cv::Mat> channels;
    cv::split(out, channels);
    for (auto& c : channels) {
        cv::Scalar mean, stddev;
        cv::meanStdDev(c, mean, stddev);
        const double s = stddev[0] > 0 ? stddev[0] : 1.0;
        c.convertTo(c, CV_32F, 1.0 / s, -mean[0] / s);
    }
    cv::merge(channels, out);
    return out;
}

Normalization parse_normalization(const std::string& name) {
    const std::string n = to_lower(trim(name));
    if (n == "none") return Normalization::None;
    if (n == "unit") return Normalization::UnitRange;
    if (n == "zscore") return Normalization::ZScore;
    if (n == "imagenet") return Normalization::ImageNet;
    throw UsageError("unknown normalisation '" + name + "' (none, unit, zscore, imagenet)");
}

}  // namespace hemoscan

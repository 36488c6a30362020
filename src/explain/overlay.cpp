#include "hemoscan/explain/overlay.hpp"

#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"

namespace hemoscan {

cv::Mat overlay_heatmap(const cv::Mat& image, const cv::Mat& cam, double alpha) {
    if (image.empty() || (image.type() != CV_8UC1 && image.type() != CV_8UC3))
        throw UsageError("overlay_heatmap: image must be a non-empty CV_8UC1 or CV_8UC3 matrix");
    if (cam.empty() || cam.type() != CV_32FC1)
        throw UsageError("overlay_heatmap: cam must be a non-empty CV_32FC1 matrix");
    if (!(alpha >= 0.0 && alpha <= 1.0))
        throw UsageError("overlay_heatmap: alpha must be in [0, 1] (got " + std::to_string(alpha) + ")");

    cv::Mat bgr;
    if (image.channels() == 1)
        cv::cvtColor(image, bgr, cv::COLOR_GRAY2BGR);
    else
        bgr = image;

    cv::Mat weight;  // per-pixel colour weight alpha * cam, CV_32FC1 at image size
    if (cam.size() != image.size())
        cv::resize(cam, weight, image.size(), 0, 0, cv::INTER_LINEAR);
    else
        weight = cam.clone();
    cv::min(cv::max(weight, 0.0), 1.0, weight);

    cv::Mat cam8, heat;
    weight.convertTo(cam8, CV_8U, 255.0);
    cv::applyColorMap(cam8, heat, cv::COLORMAP_JET);
    weight *= alpha;

    cv::Mat w3, bgr_f, heat_f;
    cv::merge(std::vector<cv::Mat>{weight, weight, weight}, w3);
    bgr.convertTo(bgr_f, CV_32FC3);
    heat.convertTo(heat_f, CV_32FC3);
    cv::Mat blended = bgr_f + w3.mul(heat_f - bgr_f);
    cv::Mat out;
    blended.convertTo(out, CV_8UC3);  // rounds and saturates
    return out;
}

}  // namespace hemoscan

// Lesion insertion (see hemoscan/augment/lesion.hpp).
#include "hemoscan/augment/lesion.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "hemoscan/error.hpp"

namespace hemoscan {

cv::Mat lesion_candidates(const cv::Mat& image) {
    if (image.empty() || image.depth() != CV_32F) throw UsageError("lesion insertion: needs a float image");
    cv::Mat first;
    cv::extractChannel(image, first, 0);
    cv::Mat head = first > 0.04f;
    // Everything not air is head; eroding it keeps lesions off the skull and the scalp.
    const int k = std::max(3, static_cast<int>(std::lround(0.10 * std::min(image.rows, image.cols))) | 1);
    cv::erode(head, head, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(k, k)));
    cv::Mat tissue = (first > 0.25f) & (first < 0.70f);
    return head & tissue;
}

bool insert_lesion(cv::Mat& image, const LesionInsertOptions& o, std::uint64_t seed) {
    if (!(o.probability > 0)) return false;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    if (u(rng) >= o.probability) return false;
    const cv::Mat candidates = lesion_candidates(image);
    std::vector<cv::Point> points;
    cv::findNonZero(candidates, points);
    if (points.size() < 10) return false;
    const cv::Point centre = points[static_cast<size_t>(u(rng) * static_cast<double>(points.size())) % points.size()];
    const double width = image.cols;
    const double a = width * (o.min_radius + (o.max_radius - o.min_radius) * u(rng));
    const double b = a * (0.6 + 0.4 * u(rng));
    const double angle = 180.0 * u(rng);
    const double contrast = o.min_contrast + (o.max_contrast - o.min_contrast) * u(rng);

    // A soft edge (partial volume), then a little texture, as a real haematoma has.
    cv::Mat weight(image.size(), CV_32FC1, cv::Scalar(0));
    cv::ellipse(weight, cv::RotatedRect(cv::Point2f(static_cast<float>(centre.x), static_cast<float>(centre.y)),
                                        cv::Size2f(static_cast<float>(2 * a), static_cast<float>(2 * b)),
                                        static_cast<float>(angle)),
                cv::Scalar(1), -1, cv::LINE_AA);
    const double sigma = std::max(0.6, 0.25 * b);
    cv::GaussianBlur(weight, weight, cv::Size(0, 0), sigma);
    cv::Mat texture(image.size(), CV_32FC1);
    cv::RNG cvrng(rng());  // seeded here, not OpenCV's global state: same lesion on any thread
    cvrng.fill(texture, cv::RNG::NORMAL, 0.0, 0.08);
    cv::Mat gain = weight.mul(1.0f + texture) * contrast;

    std::vector<cv::Mat> planes;
    cv::split(image, planes);
    for (size_t c = 0; c < planes.size(); ++c) {
        const float g = c < o.channel_gain.size() ? o.channel_gain[c] : 1.f;
        planes[c] += gain * g;
        cv::min(planes[c], 1.0, planes[c]);
    }
    cv::merge(planes, image);
    return true;
}

}  // namespace hemoscan

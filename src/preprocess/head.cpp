// Cropping to the head: the largest connected foreground component, without letters, table or air.
#include <algorithm>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

namespace hemoscan {

namespace {

// Fills the holes of a 0/255 mask: background not reachable from the border becomes foreground.
cv::Mat fill_holes(const cv::Mat& mask) {
    cv::Mat padded;
    cv::copyMakeBorder(mask, padded, 1, 1, 1, 1, cv::BORDER_CONSTANT, cv::Scalar(0));
    cv::floodFill(padded, cv::Point(0, 0), cv::Scalar(255));  // the outside, through the 1-pixel frame
    cv::Mat holes = padded(cv::Rect(1, 1, mask.cols, mask.rows)) == 0;
    return mask | holes;
}

}  // namespace

cv::Rect find_head(const cv::Mat& gray, float threshold, int margin, cv::Mat* head_mask) {
    if (gray.empty()) throw UsageError("find_head: empty image");
    cv::Mat plane;
    if (gray.channels() == 1) {
        plane = gray;
    } else {
        cv::extractChannel(gray, plane, 0);
    }
    if (plane.depth() != CV_32F) plane.convertTo(plane, CV_32F);
    const cv::Mat binary = plane > threshold;
    const cv::Rect whole(0, 0, gray.cols, gray.rows);

    // The opening breaks thin bridges (a letter touching the scalp, the table's rim); tiny images
    // or thin foreground the opening would erase completely are used as they are.
    const cv::Mat kernel = cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(5, 5));
    cv::Mat opened;
    cv::morphologyEx(binary, opened, cv::MORPH_OPEN, kernel);
    if (cv::countNonZero(opened) == 0) opened = binary;

    cv::Mat labels, stats, centroids;
    const int n = cv::connectedComponentsWithStats(opened, labels, stats, centroids, 8, CV_32S);
    int best = 0, best_area = 0;
    for (int i = 1; i < n; ++i) {
        const int area = stats.at<int>(i, cv::CC_STAT_AREA);
        if (area > best_area) best = i, best_area = area;
    }
    if (best == 0) {  // no foreground: keep everything
        if (head_mask) *head_mask = cv::Mat(gray.size(), CV_8UC1, cv::Scalar(255));
        return whole;
    }
    cv::Mat component = labels == best;
    // Give back the rim the opening shaved off (skin, thin bone), but only next to the head, so
    // that the broken bridges stay broken.
    cv::Mat grown;
    cv::dilate(component, grown, kernel);
    component |= grown & binary;
    component = fill_holes(component);

    const cv::Rect box = cv::boundingRect(component);
    const int m = std::max(margin, 0);
    const cv::Rect padded = cv::Rect(box.x - m, box.y - m, box.width + 2 * m, box.height + 2 * m) & whole;
    if (head_mask) *head_mask = component;
    return padded;
}

void crop_to_head(Sample& sample, float threshold, float background, int margin) {
    if (sample.image.empty()) return;
    if (!sample.mask.empty() && sample.mask.size() != sample.image.size()) {
        throw InputError(sample.meta.path + ": mask size differs from the image size");
    }
    cv::Mat head;
    const cv::Rect box = find_head(sample.image, threshold, margin, &head);
    cv::Mat image = sample.image.clone();
    image.setTo(cv::Scalar::all(background), head == 0);
    sample.image = image(box).clone();
    if (!sample.mask.empty()) sample.mask = sample.mask(box).clone();
}

}  // namespace hemoscan

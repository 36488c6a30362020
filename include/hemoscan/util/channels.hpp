#pragma once
// OpenCV functions that take a cv::Scalar (4 values) or work on 1-4 channels only, applied to images
// of any channel count (MR sequences as channels: 5 or more) one channel at a time.
#include <opencv2/core.hpp>

#include <vector>

namespace hemoscan {

// f(image) when image has at most `max_channels` channels, else f applied to each channel and merged.
template <typename F>
cv::Mat per_channel(const cv::Mat& image, F&& f, int max_channels = 4) {
    if (image.channels() <= max_channels) return f(image);
    std::vector<cv::Mat> channels;
    cv::split(image, channels);
    for (auto& c : channels) c = f(c);
    cv::Mat out;
    cv::merge(channels, out);
    return out;
}

}  // namespace hemoscan

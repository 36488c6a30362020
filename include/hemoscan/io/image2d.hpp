#pragma once
// 2D image files (PNG, JPG, BMP, TIFF) through OpenCV imgcodecs.
#include <filesystem>

#include "hemoscan/image.hpp"

namespace hemoscan {

// Extensions (lower case, with dot) read as 2D images.
bool is_image_2d_path(const std::filesystem::path& path);

// Reads an 8/16-bit gray/RGB/RGBA image of any size into one float channel (CV_32FC1).
// Colour is converted to luminance (ITU-R BT.601, as cv::COLOR_BGR2GRAY); alpha is dropped (pixels
// are composited on black, which is air in a CT rendering). 8-bit images keep their 0-255 grey
// values, 16-bit images keep 0-65535. meta.already_windowed is set for 8-bit images.
// Throws InputError naming the file if it is missing, empty, truncated or not an image.
cv::Mat read_image_2d(const std::filesystem::path& path, ImageMeta* meta = nullptr);

// The pixels as the file stores them (any depth, 1-4 channels, colour in BGR order) after the same
// checks as read_image_2d (the file is PNG, JPEG, BMP or TIFF by content, and the size its header claims
// is within read_limits()): for label maps, whose values must not be converted.
cv::Mat read_image_2d_pixels(const std::filesystem::path& path);

// Writes an image (CV_8U or CV_16U, 1, 3 (BGR) or 4 (BGRA) channels) atomically; format from the extension.
void write_image_2d(const std::filesystem::path& path, const cv::Mat& image);

}  // namespace hemoscan

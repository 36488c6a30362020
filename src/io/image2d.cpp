#include "hemoscan/io/image2d.hpp"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "hemoscan/error.hpp"
#include "hemoscan/io/limits.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace {

bool is_jpeg_path(const fs::path& path) {
    const std::string ext = to_lower(path.extension().string());
    return ext == ".jpg" || ext == ".jpeg";
}

// libjpeg fills a truncated scan with grey and only warns, so a cut JPEG would decode "fine".
// A complete file ends with the EOI marker (FF D9); entropy-coded data never contains FF D9, so
// its presence near the end is a reliable completeness check (some writers append a few bytes).
bool jpeg_has_end_marker(const std::string& bytes) {
    const size_t tail = std::min<size_t>(bytes.size(), 4096);
    for (size_t i = bytes.size() - tail; i + 1 < bytes.size(); ++i) {
        if (static_cast<unsigned char>(bytes[i]) == 0xFF && static_cast<unsigned char>(bytes[i + 1]) == 0xD9) {
            return true;
        }
    }
    return false;
}

bool is_png_path(const fs::path& path) { return to_lower(path.extension().string()) == ".png"; }

// A complete PNG ends with the IEND chunk. Checking it first catches truncated files before
// libpng, which would also print its own complaint to stderr.
bool png_has_end_chunk(const std::string& bytes) {
    const size_t tail = std::min<size_t>(bytes.size(), 1024);
    return bytes.find("IEND", bytes.size() - tail) != std::string::npos;
}

std::int64_t be16(const std::string& b, size_t i) {
    return (static_cast<std::int64_t>(static_cast<unsigned char>(b[i])) << 8) | static_cast<unsigned char>(b[i + 1]);
}
std::int64_t be32(const std::string& b, size_t i) { return (be16(b, i) << 16) | be16(b, i + 2); }
std::int64_t le16(const std::string& b, size_t i) {
    return static_cast<unsigned char>(b[i]) | (static_cast<std::int64_t>(static_cast<unsigned char>(b[i + 1])) << 8);
}
std::int64_t le32s(const std::string& b, size_t i) {
    std::uint32_t v = 0;
    for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(b[i + static_cast<size_t>(k)]);
    return static_cast<std::int32_t>(v);
}

// Width and height in the first IFD of a TIFF (the page OpenCV decodes), classic or BigTIFF, either byte
// order; {0, 0} when not found. Every ImageWidth (256) / ImageLength (257) entry counts, the largest
// winning, so that a second entry cannot hide a size; the value types are those libtiff accepts there.
std::pair<std::int64_t, std::int64_t> tiff_size(const std::string& b) {
    if (b.size() < 8) return {0, 0};
    const bool little = b[0] == 'I';
    auto u = [&](std::uint64_t at, int bytes) -> std::uint64_t {  // callers check that the bytes exist
        std::uint64_t v = 0;
        for (int k = 0; k < bytes; ++k) {
            v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<std::uint64_t>(little ? bytes - 1 - k : k)]);
        }
        return v;
    };
    const bool big = u(2, 2) == 43;
    if (big && b.size() < 16) return {0, 0};
    const std::uint64_t count_bytes = big ? 8 : 2, entry_bytes = big ? 20 : 12, inline_bytes = big ? 8 : 4;
    const std::uint64_t ifd = big ? u(8, 8) : u(4, 4);
    if (ifd > b.size() || b.size() - ifd < count_bytes) return {0, 0};
    const std::uint64_t fit = (b.size() - ifd - count_bytes) / entry_bytes;  // entries present in the file
    const std::uint64_t entries = std::min(u(ifd, static_cast<int>(count_bytes)), fit);
    std::int64_t size[2] = {0, 0};
    for (std::uint64_t e = 0; e < entries; ++e) {
        const std::uint64_t at = ifd + count_bytes + e * entry_bytes;
        const std::uint64_t tag = u(at, 2), type = u(at + 2, 2);
        if (tag != 256 && tag != 257) continue;
        int bytes = 0;
        if (type == 1 || type == 6) bytes = 1;                     // BYTE, SBYTE
        if (type == 3 || type == 8) bytes = 2;                     // SHORT, SSHORT
        if (type == 4 || type == 9 || type == 13) bytes = 4;       // LONG, SLONG, IFD
        if (type == 16 || type == 17 || type == 18) bytes = 8;     // LONG8, SLONG8, IFD8
        if (bytes == 0) continue;                                  // libtiff refuses other types here
        std::uint64_t value_at = at + entry_bytes - inline_bytes;  // values that fit are stored in the entry
        if (static_cast<std::uint64_t>(bytes) > inline_bytes) {
            value_at = u(value_at, static_cast<int>(inline_bytes));
            if (value_at > b.size() || b.size() - value_at < static_cast<std::uint64_t>(bytes)) continue;
        }
        // Negative (signed) values read as huge ones: refused either way, as libtiff does.
        const std::uint64_t value = u(value_at, bytes);
        std::int64_t& slot = size[tag - 256];
        slot = std::max(slot, static_cast<std::int64_t>(std::min<std::uint64_t>(value, INT64_MAX)));
    }
    return {size[0], size[1]};
}

enum class Format { Png, Jpeg, Bmp, Tiff, Other };

// By the magic number: the formats hemoscan reads (is_image_2d_path). OpenCV decodes more (PNM, WebP,
// JPEG 2000, Sun raster, Radiance, ...), whose sizes are not checked here, so those are refused.
Format format_of(const std::string& b) {
    auto starts = [&](const char* magic, size_t n) { return b.size() >= n && b.compare(0, n, magic, n) == 0; };
    if (starts("\x89PNG\r\n\x1a\n", 8)) return Format::Png;
    if (starts("\xFF\xD8", 2)) return Format::Jpeg;
    if (starts("BM", 2)) return Format::Bmp;
    if (starts("II*\0", 4) || starts("MM\0*", 4) || starts("II+\0", 4) || starts("MM\0+", 4)) return Format::Tiff;
    return Format::Other;
}

// JPEG: the first start-of-frame's height and width, walking the markers as libjpeg does (bytes between
// markers are skipped: libjpeg only warns about them, so a stray byte must not end the search).
std::pair<std::int64_t, std::int64_t> jpeg_size(const std::string& b) {
    size_t i = 2;
    while (i + 9 < b.size()) {
        if (static_cast<unsigned char>(b[i]) != 0xFF) {  // not a marker
            ++i;
            continue;
        }
        const unsigned char marker = static_cast<unsigned char>(b[i + 1]);
        if (marker == 0xFF) {  // fill byte
            ++i;
            continue;
        }
        if (marker == 0x00 || marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
            i += 2;
            continue;
        }
        // SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
            return {be16(b, i + 7), be16(b, i + 5)};
        }
        if (marker == 0xDA || marker == 0xD9) return {0, 0};  // scan or end before a frame: libjpeg fails too
        i += 2 + static_cast<size_t>(be16(b, i + 2));
    }
    return {0, 0};
}

// Width and height as the file's header claims them (PNG IHDR, JPEG start-of-frame, BMP info header,
// TIFF first IFD), read before decoding so that a small file claiming a huge image is refused before
// OpenCV allocates it; {0, 0} when the header holds none (then the decoder would fail too).
std::pair<std::int64_t, std::int64_t> header_size(const std::string& b, Format format) {
    switch (format) {
        case Format::Png:
            if (b.size() >= 24 && b.compare(12, 4, "IHDR") == 0) return {be32(b, 16), be32(b, 20)};
            break;
        case Format::Bmp:
            if (b.size() >= 26 && le32s(b, 14) == 12) {  // OS/2 core header: 16-bit width and height
                return {le16(b, 18), le16(b, 20)};
            }
            if (b.size() >= 26) {
                const std::int64_t h = le32s(b, 22);
                return {le32s(b, 18), h < 0 ? -h : h};  // negative height: rows stored top-down
            }
            break;
        case Format::Jpeg: return jpeg_size(b);
        case Format::Tiff: return tiff_size(b);
        case Format::Other: break;
    }
    return {0, 0};
}

double full_scale(int depth) {
    switch (depth) {
        case CV_8U: return 255.0;
        case CV_16U: return 65535.0;
        default: return 1.0;  // float images: alpha in 0..1
    }
}

}  // namespace

bool is_image_2d_path(const std::filesystem::path& path) {
    static const std::vector<std::string> extensions = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"};
    const std::string ext = to_lower(path.extension().string());
    return std::find(extensions.begin(), extensions.end(), ext) != extensions.end();
}

cv::Mat read_image_2d_pixels(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::error_code ec;
    if (!fs::exists(path, ec)) throw InputError(name + ": file not found");
    if (fs::is_directory(path, ec)) throw InputError(name + ": is a folder, not an image file");
    const std::string bytes = read_file(path);
    if (bytes.empty()) throw InputError(name + ": empty file");
    if (is_jpeg_path(path) && !jpeg_has_end_marker(bytes)) {
        throw InputError(name + ": truncated or corrupt JPEG (no end-of-image marker)");
    }

    if (is_png_path(path) && bytes.compare(0, 4, "\x89PNG") == 0 && !png_has_end_chunk(bytes)) {
        throw InputError(name + ": truncated or corrupt PNG (no IEND chunk)");
    }

    const Format format = format_of(bytes);
    if (format == Format::Other) throw InputError(name + ": not a PNG, JPEG, BMP or TIFF image");
    const auto [width, height] = header_size(bytes, format);
    if (width == 0 && height == 0) throw InputError(name + ": truncated or corrupt image (no size in its header)");
    check_slice_pixels(name, height, width, "the image");

    cv::Mat raw;
    try {
        const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8UC1,
                             const_cast<char*>(bytes.data()));  // imdecode only reads it
        raw = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
    } catch (const cv::Exception& e) {
        throw InputError(name + ": cannot decode image (" + e.what() + ")");
    }
    if (raw.empty()) throw InputError(name + ": corrupt, truncated or not an image (cannot decode)");
    return raw;
}

cv::Mat read_image_2d(const std::filesystem::path& path, ImageMeta* meta) {
    const std::string name = path.string();
    const cv::Mat raw = read_image_2d_pixels(path);
    const int depth = raw.depth();
    if (depth != CV_8U && depth != CV_16U && depth != CV_32F) {
        throw InputError(name + ": unsupported pixel depth (8-bit, 16-bit or float images only)");
    }
    const int channels = raw.channels();
    if (channels < 1 || channels > 4) {
        throw InputError(name + ": unsupported number of channels (" + std::to_string(channels) + ")");
    }

    cv::Mat values;
    raw.convertTo(values, CV_32F);  // keeps the channels; float keeps BT.601 luminance unrounded
    cv::Mat gray;
    if (channels == 1) {
        gray = values;
    } else {
        std::vector<cv::Mat> planes;
        cv::split(values, planes);
        if (channels == 2) {
            gray = planes[0];
        } else {
            cv::Mat bgr;
            cv::merge(std::vector<cv::Mat>{planes[0], planes[1], planes[2]}, bgr);
            cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
        }
        if (channels == 2 || channels == 4) {
            // Composite on black: transparent pixels become 0 (air in a CT rendering).
            cv::Mat alpha = planes.back() * (1.0 / full_scale(depth));
            gray = gray.mul(alpha);
        }
    }

    if (meta) {
        meta->path = name;
        meta->rows = gray.rows;
        meta->cols = gray.cols;
        meta->photometric = channels >= 3 ? "RGB" : "MONOCHROME2";
        meta->already_windowed = depth == CV_8U;
        meta->is_hu = false;
    }
    logger().debug("{}: read {}x{} image, {} channel(s), depth {}", name, gray.cols, gray.rows, channels, depth);
    return gray;
}

void write_image_2d(const std::filesystem::path& path, const cv::Mat& image) {
    if (image.empty()) throw Error("cannot write " + path.string() + ": empty image");
    if (image.depth() != CV_8U && image.depth() != CV_16U) {
        throw Error("cannot write " + path.string() + ": only 8-bit or 16-bit images are written");
    }
    if (image.channels() != 1 && image.channels() != 3 && image.channels() != 4) {
        throw Error("cannot write " + path.string() + ": 1, 3 or 4 channels expected");
    }
    write_atomic_with(path, [&](const fs::path& tmp) {
        bool ok = false;
        try {
            ok = cv::imwrite(tmp.string(), image);
        } catch (const cv::Exception& e) {
            throw Error("cannot write " + path.string() + ": " + e.what());
        }
        if (!ok) throw Error("cannot write " + path.string() + " (format not supported for this image?)");
    });
}

}  // namespace hemoscan

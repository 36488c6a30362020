// 2D images (PNG/JPG/BMP/TIFF) and the load_image entry point.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <functional>
#include <string>
#include <vector>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/limits.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

// Odd sizes on purpose: nothing may assume square or even images.
cv::Mat gray8() {
    cv::Mat m(5, 7, CV_8U);
    for (int i = 0; i < static_cast<int>(m.total()); ++i) m.at<uchar>(i) = static_cast<uchar>((i * 37) % 256);
    m.at<uchar>(0) = 0;
    m.at<uchar>(1) = 255;
    return m;
}

cv::Mat gray16() {
    cv::Mat m(3, 9, CV_16U);
    for (int i = 0; i < static_cast<int>(m.total()); ++i) m.at<uint16_t>(i) = static_cast<uint16_t>(i * 2477);
    m.at<uint16_t>(0) = 65535;
    return m;
}

float bt601(double b, double g, double r) { return static_cast<float>(0.299 * r + 0.587 * g + 0.114 * b); }

}  // namespace

TEST(Image2d, ExtensionsAreRecognised) {
    for (const char* name : {"a.png", "a.PNG", "b.jpg", "b.JPEG", "c.bmp", "d.tif", "e.tiff"}) {
        EXPECT_TRUE(is_image_2d_path(name)) << name;
    }
    for (const char* name : {"a.dcm", "a", "a.txt", "a.nii.gz", "png"}) EXPECT_FALSE(is_image_2d_path(name)) << name;
}

TEST(Image2d, Gray8PngIsExactAndMarkedWindowed) {
    test::TempDir dir;
    write_image_2d(dir / "g8.png", gray8());
    ImageMeta meta;
    const cv::Mat img = read_image_2d(dir / "g8.png", &meta);
    test::expect_mat_exact(img, gray8());
    EXPECT_TRUE(meta.already_windowed);
    EXPECT_FALSE(meta.is_hu);
    EXPECT_EQ(meta.rows, 5);
    EXPECT_EQ(meta.cols, 7);
    EXPECT_EQ(meta.path, (dir / "g8.png").string());
}

TEST(Image2d, Gray16PngKeepsFullRange) {
    test::TempDir dir;
    write_image_2d(dir / "g16.png", gray16());
    ImageMeta meta;
    const cv::Mat img = read_image_2d(dir / "g16.png", &meta);
    test::expect_mat_exact(img, gray16());
    EXPECT_FLOAT_EQ(img.at<float>(0), 65535.0f);
    EXPECT_FALSE(meta.already_windowed);
}

TEST(Image2d, Gray16TiffAndGray8BmpAreExact) {
    test::TempDir dir;
    write_image_2d(dir / "g16.tif", gray16());
    test::expect_mat_exact(read_image_2d(dir / "g16.tif"), gray16());
    write_image_2d(dir / "g8.bmp", gray8());
    test::expect_mat_exact(read_image_2d(dir / "g8.bmp"), gray8());
}

TEST(Image2d, RgbPngBecomesBt601Luminance) {
    test::TempDir dir;
    cv::Mat bgr(2, 3, CV_8UC3);
    bgr.at<cv::Vec3b>(0, 0) = {0, 0, 255};      // pure red
    bgr.at<cv::Vec3b>(0, 1) = {0, 255, 0};      // pure green
    bgr.at<cv::Vec3b>(0, 2) = {255, 0, 0};      // pure blue
    bgr.at<cv::Vec3b>(1, 0) = {128, 128, 128};  // grey stays grey
    bgr.at<cv::Vec3b>(1, 1) = {10, 200, 90};
    bgr.at<cv::Vec3b>(1, 2) = {255, 255, 255};
    write_image_2d(dir / "rgb.png", bgr);
    ImageMeta meta;
    const cv::Mat img = read_image_2d(dir / "rgb.png", &meta);
    ASSERT_EQ(img.type(), CV_32FC1);
    ASSERT_EQ(img.size(), bgr.size());
    for (int r = 0; r < 2; ++r) {
        for (int c = 0; c < 3; ++c) {
            const cv::Vec3b p = bgr.at<cv::Vec3b>(r, c);
            EXPECT_NEAR(img.at<float>(r, c), bt601(p[0], p[1], p[2]), 1.0) << r << "," << c;
        }
    }
    EXPECT_NEAR(img.at<float>(0, 0), 76.245f, 0.01);
    EXPECT_NEAR(img.at<float>(1, 0), 128.0f, 0.01);
    EXPECT_TRUE(meta.already_windowed);
    EXPECT_EQ(meta.photometric, "RGB");
}

TEST(Image2d, RgbaPngIsCompositedOnBlack) {
    test::TempDir dir;
    cv::Mat bgra(1, 4, CV_8UC4);
    bgra.at<cv::Vec4b>(0, 0) = {50, 100, 200, 255};  // opaque: plain luminance
    bgra.at<cv::Vec4b>(0, 1) = {50, 100, 200, 0};    // transparent: black
    bgra.at<cv::Vec4b>(0, 2) = {255, 255, 255, 51};  // white at 20 %: 51
    bgra.at<cv::Vec4b>(0, 3) = {80, 80, 80, 255};
    write_image_2d(dir / "rgba.png", bgra);
    const cv::Mat img = read_image_2d(dir / "rgba.png");
    ASSERT_EQ(img.type(), CV_32FC1);
    ASSERT_EQ(img.size(), cv::Size(4, 1));
    EXPECT_NEAR(img.at<float>(0), bt601(50, 100, 200), 1.0);
    EXPECT_NEAR(img.at<float>(1), 0.0f, 1e-4);
    EXPECT_NEAR(img.at<float>(2), 51.0f, 1.0);
    EXPECT_NEAR(img.at<float>(3), 80.0f, 1e-3);
}

TEST(Image2d, JpegReadsBackCloseToTheOriginal) {
    test::TempDir dir;
    // Flat 8x8 blocks survive JPEG almost unchanged.
    cv::Mat m(16, 24, CV_8U);
    for (int r = 0; r < m.rows; ++r) {
        for (int c = 0; c < m.cols; ++c) m.at<uchar>(r, c) = static_cast<uchar>(40 + 60 * ((r / 8 + c / 8) % 3));
    }
    write_image_2d(dir / "flat.jpg", m);
    ImageMeta meta;
    const cv::Mat img = read_image_2d(dir / "flat.jpg", &meta);
    ASSERT_EQ(img.size(), m.size());
    cv::Mat expected;
    m.convertTo(expected, CV_32F);
    double max_diff = 0;
    cv::minMaxLoc(cv::abs(img - expected), nullptr, &max_diff);
    EXPECT_LE(max_diff, 3.0);
    EXPECT_TRUE(meta.already_windowed);

    // A colour JPEG: luminance of a flat colour.
    write_image_2d(dir / "colour.jpg", cv::Mat(16, 16, CV_8UC3, cv::Scalar(30, 120, 210)));
    const cv::Mat colour = read_image_2d(dir / "colour.jpg");
    EXPECT_NEAR(colour.at<float>(8, 8), bt601(30, 120, 210), 3.0);
}

TEST(Image2dErrors, CorruptTruncatedEmptyAndMissingFilesNameTheFile) {
    test::TempDir dir;
    const fs::path text = dir / "fake.png";
    test::write_text(text, "this is plain text, not a PNG");
    test::expect_input_error([&] { read_image_2d(text); }, {text.string()});
    test::expect_input_error([&] { load_image(text); }, {text.string()});

    cv::Mat big(64, 64, CV_8U);
    cv::randu(big, 0, 255);  // noise: the compressed data is long and a cut lands inside it
    write_image_2d(dir / "whole.png", big);
    const std::string png = read_file(dir / "whole.png");
    const fs::path cut = dir / "cut.png";
    test::write_text(cut, png.substr(0, png.size() / 2));
    test::expect_input_error([&] { read_image_2d(cut); }, {cut.string()});
    test::expect_input_error([&] { load_image(cut); }, {cut.string()});

    write_image_2d(dir / "whole.jpg", big);
    const std::string jpg = read_file(dir / "whole.jpg");
    const fs::path cut_jpg = dir / "cut.jpg";
    test::write_text(cut_jpg, jpg.substr(0, jpg.size() / 2));
    test::expect_input_error([&] { read_image_2d(cut_jpg); }, {cut_jpg.string(), "truncated"});

    const fs::path empty = dir / "empty.png";
    test::write_text(empty, "");
    test::expect_input_error([&] { read_image_2d(empty); }, {empty.string(), "empty"});
    test::expect_input_error([&] { load_image(empty); }, {empty.string(), "empty"});

    const fs::path missing = dir / "missing.png";
    test::expect_input_error([&] { read_image_2d(missing); }, {missing.string(), "not found"});
    test::expect_input_error([&] { load_image(missing); }, {missing.string(), "not found"});
}

// Issue 28: the header's size is checked before decoding. A small file claiming 12000 x 12000 pixels
// (PNG, JPEG, BMP) is refused naming the file and the limit (a 140 KB PNG of that size used to make the
// CLI peak at 2.2 GB and pass).
TEST(Image2dErrors, HugeClaimedSizeRefusedBeforeDecoding) {
    test::TempDir dir;
    const cv::Mat small(8, 8, CV_8UC1, cv::Scalar(100));
    auto put_be = [](std::vector<uchar>& b, size_t at, int bytes, int64_t v) {
        for (int k = 0; k < bytes; ++k) b[at + static_cast<size_t>(k)] = static_cast<uchar>(v >> (8 * (bytes - 1 - k)));
    };
    auto put_le32 = [](std::vector<uchar>& b, size_t at, int64_t v) {
        for (int k = 0; k < 4; ++k) b[at + static_cast<size_t>(k)] = static_cast<uchar>(v >> (8 * k));
    };
    for (const std::string ext : {".png", ".jpg", ".bmp"}) {
        SCOPED_TRACE(ext);
        std::vector<uchar> bytes;
        ASSERT_TRUE(cv::imencode(ext, small, bytes));
        if (ext == ".png") {
            put_be(bytes, 16, 4, 12000);
            put_be(bytes, 20, 4, 12000);
        } else if (ext == ".bmp") {
            put_le32(bytes, 18, 12000);
            put_le32(bytes, 22, 12000);
        } else {  // the first start-of-frame marker (FF C0): length, precision, height, width
            size_t i = 2;
            while (!(bytes[i] == 0xFF && bytes[i + 1] == 0xC0)) i += 2 + (static_cast<size_t>(bytes[i + 2]) << 8 | bytes[i + 3]);
            put_be(bytes, i + 5, 2, 12000);
            put_be(bytes, i + 7, 2, 12000);
        }
        const fs::path path = dir / ("huge" + ext);
        test::write_text(path, std::string(bytes.begin(), bytes.end()));
        test::expect_input_error([&] { read_image_2d(path); },
                                 {path.string(), "12000 x 12000 pixels", "limit of 16777216 pixels per slice"});
    }
    const fs::path ok = dir / "ok.png";
    cv::imwrite(ok.string(), small);
    EXPECT_EQ(read_image_2d(ok).rows, 8);
    const ReadLimits saved = read_limits();
    ReadLimits tight = saved;
    tight.max_pixels_per_slice = 63;
    set_read_limits(tight);
    test::expect_input_error([&] { read_image_2d(ok); }, {ok.string(), "8 x 8", "limit of 63"});
    set_read_limits(saved);
}

namespace {

// A minimal uncompressed 8-bit grey TIFF (one strip of pixels all 7), classic or BigTIFF, in either byte
// order; ImageWidth as LONG (LONG8 in BigTIFF), ImageLength as SHORT. A claimed size over 4096 pixels
// gets 64 bytes of pixels (the file is refused before they matter).
std::string tiny_tiff(bool little, bool big, uint64_t width, uint64_t height) {
    std::string b;
    auto put = [&](uint64_t v, int bytes) {
        for (int k = 0; k < bytes; ++k) b.push_back(static_cast<char>(v >> (8 * (little ? k : bytes - 1 - k))));
    };
    b += little ? "II" : "MM";
    put(big ? 43 : 42, 2);
    if (big) {
        put(8, 2);  // offset size
        put(0, 2);
        put(16, 8);  // first IFD
    } else {
        put(8, 4);
    }
    const uint64_t pixels = width * height <= 4096 ? width * height : 64;
    struct Entry {
        uint16_t tag, type;
        uint64_t value;
    };
    const uint16_t long_type = big ? 16 : 4, short_type = 3;
    std::vector<Entry> entries = {{256, long_type, width}, {257, short_type, height}, {258, short_type, 8},
                                  {259, short_type, 1},     {262, short_type, 1},     {273, 4, 0},
                                  {277, short_type, 1},     {278, 4, height},         {279, 4, pixels}};
    const uint64_t inline_bytes = big ? 8 : 4;
    entries[5].value = b.size() + (big ? 8 : 2) + entries.size() * (big ? 20 : 12) + inline_bytes;  // the strip
    put(entries.size(), big ? 8 : 2);
    for (const Entry& e : entries) {
        put(e.tag, 2);
        put(e.type, 2);
        put(1, static_cast<int>(inline_bytes));  // one value, stored left-justified in the entry
        const int size = e.type == 3 ? 2 : e.type == 4 ? 4 : 8;
        put(e.value, size);
        put(0, static_cast<int>(inline_bytes) - size);
    }
    put(0, static_cast<int>(inline_bytes));  // no next IFD
    b.append(static_cast<size_t>(pixels), '\x07');
    return b;
}

}  // namespace

// Issue 28: TIFF's size is checked before decoding too (ImageWidth/ImageLength of the first IFD), in
// both byte orders, classic and BigTIFF; a TIFF claiming 12000 x 12000 pixels used to reach OpenCV.
TEST(Image2dErrors, HugeClaimedTiffSizeRefusedBeforeDecoding) {
    test::TempDir dir;
    for (const bool little : {true, false}) {
        for (const bool big : {false, true}) {
            SCOPED_TRACE(std::string(little ? "II" : "MM") + (big ? " BigTIFF" : " TIFF"));
            const fs::path ok = dir / "ok.tif";
            test::write_text(ok, tiny_tiff(little, big, 5, 3));
            const cv::Mat img = read_image_2d(ok);
            EXPECT_EQ(img.cols, 5);
            EXPECT_EQ(img.rows, 3);
            EXPECT_EQ(img.at<float>(2, 4), 7.0f);
            const fs::path huge = dir / "huge.tif";
            test::write_text(huge, tiny_tiff(little, big, 12000, 12000));
            test::expect_input_error([&] { read_image_2d(huge); },
                                     {huge.string(), "12000 x 12000 pixels", "limit of 16777216 pixels per slice"});
        }
    }
    // OpenCV's own TIFF (little-endian) with the sizes in its first IFD patched.
    std::vector<uchar> bytes;
    ASSERT_TRUE(cv::imencode(".tif", cv::Mat(8, 8, CV_8UC1, cv::Scalar(100)), bytes));
    ASSERT_EQ(std::string(bytes.begin(), bytes.begin() + 2), "II");
    auto le = [&](size_t at, int n) {
        uint64_t v = 0;
        for (int k = n - 1; k >= 0; --k) v = (v << 8) | bytes[at + static_cast<size_t>(k)];
        return v;
    };
    const size_t ifd = le(4, 4);
    int patched = 0;
    for (size_t e = 0; e < le(ifd, 2); ++e) {
        const size_t at = ifd + 2 + 12 * e;
        if (le(at, 2) != 256 && le(at, 2) != 257) continue;
        const uint64_t type = le(at + 2, 2);
        ASSERT_TRUE(type == 3 || type == 4);
        bytes[at + 8] = 12000 & 0xFF;
        bytes[at + 9] = 12000 >> 8;
        ++patched;
    }
    ASSERT_EQ(patched, 2);
    const fs::path path = dir / "patched.tiff";
    test::write_text(path, std::string(bytes.begin(), bytes.end()));
    test::expect_input_error([&] { read_image_2d(path); }, {path.string(), "12000 x 12000 pixels"});
}

// Issue 28: sizes no header check reads could still reach OpenCV's allocator. Found by review while
// fuzzing (then reproduced with the fuzz harness: malloc of 2.7 and 3.6 GB): OpenCV decodes formats
// hemoscan does not read (PNM, WebP, JPEG 2000, ...) whatever the name, and libjpeg skips stray bytes
// before a marker where the JPEG header walk gave up.
TEST(Image2dErrors, OtherFormatsAndStrayJpegBytesCannotHideASize) {
    test::TempDir dir;
    const fs::path ppm = dir / "huge.png";
    test::write_text(ppm, "P6\n30000 30000\n255\n" + std::string(64, '\0'));
    test::expect_input_error([&] { read_image_2d(ppm); }, {ppm.string(), "not a PNG, JPEG, BMP or TIFF image"});
    std::vector<uchar> bytes;
    ASSERT_TRUE(cv::imencode(".pgm", gray8(), bytes));
    const fs::path pgm = dir / "small.png";
    test::write_text(pgm, std::string(bytes.begin(), bytes.end()));
    test::expect_input_error([&] { read_image_2d(pgm); }, {pgm.string(), "not a PNG, JPEG, BMP or TIFF image"});

    // A JPEG with one stray byte before its frame header: libjpeg reads it (with a warning), so must we.
    ASSERT_TRUE(cv::imencode(".jpg", cv::Mat(8, 8, CV_8UC1, cv::Scalar(100)), bytes));
    size_t sof = 2;
    while (!(bytes[sof] == 0xFF && bytes[sof + 1] == 0xC0)) {
        sof += 2 + (static_cast<size_t>(bytes[sof + 2]) << 8 | bytes[sof + 3]);
    }
    bytes.insert(bytes.begin() + static_cast<long>(sof), 0x00);
    const fs::path stray = dir / "stray.jpg";
    test::write_text(stray, std::string(bytes.begin(), bytes.end()));
    EXPECT_EQ(read_image_2d(stray).size(), cv::Size(8, 8));
    for (const size_t at : {sof + 1 + 5, sof + 1 + 7}) {  // height, width
        bytes[at] = 12000 >> 8;
        bytes[at + 1] = 12000 & 0xFF;
    }
    test::write_text(stray, std::string(bytes.begin(), bytes.end()));
    test::expect_input_error([&] { read_image_2d(stray); }, {stray.string(), "12000 x 12000 pixels"});
}

// OS/2 bitmaps (12-byte core header: 16-bit width and height) pass the size check with their real size.
TEST(Image2d, Os2BitmapIsRead) {
    test::TempDir dir;
    const int w = 5, h = 3, row = (w * 3 + 3) / 4 * 4;
    std::string b = "BM";
    auto le = [&](uint32_t v, int n) {
        for (int k = 0; k < n; ++k) b.push_back(static_cast<char>(v >> (8 * k)));
    };
    le(14 + 12 + row * h, 4);  // file size
    le(0, 4);
    le(14 + 12, 4);  // pixel offset
    le(12, 4);       // core header: size, width, height, planes, bits
    le(w, 2);
    le(h, 2);
    le(1, 2);
    le(24, 2);
    for (int y = 0; y < h; ++y) b += std::string(w * 3, '\x50') + std::string(row - w * 3, '\0');
    test::write_text(dir / "os2.bmp", b);
    const cv::Mat img = read_image_2d(dir / "os2.bmp");
    EXPECT_EQ(img.size(), cv::Size(w, h));
    EXPECT_FLOAT_EQ(img.at<float>(2, 4), 80.0f);
}

TEST(Image2d, PixelsAsStoredForLabelMaps) {
    test::TempDir dir;
    write_image_2d(dir / "g16.png", gray16());
    const cv::Mat raw = read_image_2d_pixels(dir / "g16.png");
    EXPECT_EQ(raw.type(), CV_16UC1);
    EXPECT_EQ(cv::countNonZero(raw != gray16()), 0);
    const ReadLimits saved = read_limits();
    ReadLimits tight = saved;
    tight.max_pixels_per_slice = 26;
    set_read_limits(tight);
    test::expect_input_error([&] { read_image_2d_pixels(dir / "g16.png"); }, {"g16.png", "9 x 3", "limit of 26"});
    set_read_limits(saved);
}

TEST(Load, DispatchesByContentThenExtension) {
    test::TempDir dir;
    write_image_2d(dir / "slice.png", gray8());
    const DicomSlice png = load_image(dir / "slice.png");
    test::expect_mat_exact(png.pixels, gray8());
    EXPECT_TRUE(png.meta.already_windowed);
    EXPECT_FALSE(png.meta.is_hu);

    // A DICOM file with a misleading extension is still read as DICOM.
    write_dicom_ct(dir / "scan.png", (cv::Mat_<float>(1, 3) << -1000, 40, 80), DicomWriteOptions{});
    const DicomSlice dcm = load_image(dir / "scan.png");
    EXPECT_TRUE(dcm.meta.is_hu);
    EXPECT_FALSE(dcm.meta.already_windowed);
    test::expect_mat_exact(dcm.pixels, (cv::Mat_<float>(1, 3) << -1000, 40, 80));

    const fs::path other = dir / "table.csv";
    test::write_text(other, "a,b\n1,2\n");
    test::expect_input_error([&] { load_image(other); },
                       {other.string(), "not a supported image (PNG/JPG/BMP/TIFF or DICOM)"});
}

TEST(Image2dWrite, RejectsUnsupportedImages) {
    test::TempDir dir;
    EXPECT_THROW(write_image_2d(dir / "f.png", cv::Mat(2, 2, CV_32F, cv::Scalar(1))), Error);
    EXPECT_THROW(write_image_2d(dir / "e.png", cv::Mat()), Error);
    EXPECT_THROW(write_image_2d(dir / "x.unknown", gray8()), Error);
    EXPECT_FALSE(fs::exists(dir / "f.png"));
    EXPECT_FALSE(fs::exists(dir / "x.unknown"));
}

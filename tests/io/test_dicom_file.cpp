// Single DICOM files: HU, rescale, sign, MONOCHROME1, padding, compression, modality, errors.
#include <gtest/gtest.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrploss.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/limits.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

// 2 x 5 CT values covering air, water, blood, bone and the ends of the 12-bit CT range.
cv::Mat hu_gradient() {
    return (cv::Mat_<float>(2, 5) << -1000, 0, 40, 80, 1000, -1024, -1, 1, 3071, 57);
}

// A larger, seeded random CT image so that the compressors have real work to do.
cv::Mat random_hu(int rows, int cols, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> dist(-1024, 3071);
    cv::Mat m(rows, cols, CV_32F);
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c) {
            // Smooth part plus noise: like an image, not white noise only.
            m.at<float>(r, c) = static_cast<float>(c < cols / 2 ? 20 * r - 1000 : dist(rng));
        }
    }
    return m;
}

// A minimal single-frame grey-scale CT data set, written explicit little endian; `edit` adjusts it.
void write_crafted(const fs::path& path, int rows, int cols, const std::vector<Uint16>& words,
                   const std::function<void(DcmDataset&)>& edit) {
    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    ASSERT_TRUE(ds.putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage).good());
    ASSERT_TRUE(ds.putAndInsertString(DCM_SOPInstanceUID, new_dicom_uid().c_str()).good());
    ASSERT_TRUE(ds.putAndInsertString(DCM_Modality, "CT").good());
    ASSERT_TRUE(ds.putAndInsertString(DCM_SeriesInstanceUID, "1.2.3.4").good());
    ASSERT_TRUE(ds.putAndInsertUint16(DCM_SamplesPerPixel, 1).good());
    ASSERT_TRUE(ds.putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2").good());
    ASSERT_TRUE(ds.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(rows)).good());
    ASSERT_TRUE(ds.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(cols)).good());
    ASSERT_TRUE(ds.putAndInsertUint16(DCM_BitsAllocated, 16).good());
    ASSERT_TRUE(ds.putAndInsertUint16(DCM_BitsStored, 16).good());
    ASSERT_TRUE(ds.putAndInsertUint16(DCM_HighBit, 15).good());
    ASSERT_TRUE(ds.putAndInsertUint16(DCM_PixelRepresentation, 0).good());
    if (!words.empty()) {
        ASSERT_TRUE(
            ds.putAndInsertUint16Array(DCM_PixelData, words.data(), static_cast<unsigned long>(words.size())).good());
    }
    edit(ds);
    ASSERT_TRUE(file.saveFile(path.string().c_str(), EXS_LittleEndianExplicit).good());
}

void truncate_to_half(const fs::path& path) {
    const std::string bytes = read_file(path);
    test::write_text(path, bytes.substr(0, bytes.size() / 2));
}

}  // namespace

TEST(DicomFile, UncompressedRoundTripKeepsExactHuAndMetadata) {
    test::TempDir dir;
    const fs::path path = dir / "slice.dcm";
    DicomWriteOptions o;
    o.patient_id = "P-007";
    o.patient_name = "Secret^Name";
    o.study_uid = "1.2.826.0.1.3680043.2.1125.1";
    o.series_uid = "1.2.826.0.1.3680043.2.1125.2";
    o.sop_uid = "1.2.826.0.1.3680043.2.1125.3";
    o.series_description = "HEAD 5mm";
    o.instance_number = 17;
    o.position = {-120.5, -99.25, 42.125};
    o.orientation = {1, 0, 0, 0, 0.9396926207859083, 0.3420201433256687};
    o.pixel_spacing = {0.6, 0.4};
    o.slice_thickness = 2.5;
    o.window_center = 40;
    o.window_width = 80;
    write_dicom_ct(path, hu_gradient(), o);

    EXPECT_TRUE(is_dicom_file(path));
    const DicomSlice s = read_dicom_file(path);
    test::expect_mat_exact(s.pixels, hu_gradient());
    const ImageMeta& m = s.meta;
    EXPECT_EQ(m.path, path.string());
    EXPECT_EQ(m.modality, "CT");
    EXPECT_TRUE(m.is_hu);
    EXPECT_FALSE(m.already_windowed);
    EXPECT_EQ(m.patient_id, "P-007");
    EXPECT_EQ(m.study_uid, o.study_uid);
    EXPECT_EQ(m.series_uid, o.series_uid);
    EXPECT_EQ(m.sop_uid, o.sop_uid);
    EXPECT_EQ(m.series_description, "HEAD 5mm");
    EXPECT_EQ(m.instance_number, 17);
    EXPECT_EQ(m.rows, 2);
    EXPECT_EQ(m.cols, 5);
    EXPECT_TRUE(m.has_position);
    EXPECT_DOUBLE_EQ(m.position[0], -120.5);
    EXPECT_DOUBLE_EQ(m.position[1], -99.25);
    EXPECT_DOUBLE_EQ(m.position[2], 42.125);
    for (int i = 0; i < 6; ++i) EXPECT_NEAR(m.orientation[i], o.orientation[i], 1e-11) << i;
    EXPECT_TRUE(m.has_pixel_spacing);
    EXPECT_DOUBLE_EQ(m.pixel_spacing[0], 0.6);
    EXPECT_DOUBLE_EQ(m.pixel_spacing[1], 0.4);
    EXPECT_DOUBLE_EQ(m.slice_thickness, 2.5);
    EXPECT_EQ(m.window_center, std::vector<double>{40});
    EXPECT_EQ(m.window_width, std::vector<double>{80});
    EXPECT_DOUBLE_EQ(m.rescale_intercept, -1024);
    EXPECT_DOUBLE_EQ(m.rescale_slope, 1);
    EXPECT_EQ(m.photometric, "MONOCHROME2");
    EXPECT_EQ(m.transfer_syntax, UID_LittleEndianExplicitTransferSyntax);
}

TEST(DicomFile, MultiValuedWindowsAreKept) {
    test::TempDir dir;
    const fs::path path = dir / "windows.dcm";
    write_crafted(path, 1, 2, {1, 2}, [](DcmDataset& ds) {
        ds.putAndInsertString(DCM_WindowCenter, "40\\600\\-600");
        ds.putAndInsertString(DCM_WindowWidth, "80\\2800\\1500");
    });
    const DicomSlice s = read_dicom_file(path);
    EXPECT_EQ(s.meta.window_center, (std::vector<double>{40, 600, -600}));
    EXPECT_EQ(s.meta.window_width, (std::vector<double>{80, 2800, 1500}));
    EXPECT_FALSE(s.meta.has_position);
    EXPECT_FALSE(s.meta.has_pixel_spacing);
    // No rescale tags: stored values are the values.
    test::expect_mat_exact(s.pixels, (cv::Mat_<float>(1, 2) << 1, 2));
}

TEST(DicomFile, WriterHonoursSlopeAndIntercept) {
    test::TempDir dir;
    const fs::path path = dir / "slope2.dcm";
    DicomWriteOptions o;
    o.rescale_slope = 2;
    o.rescale_intercept = -1000;
    write_dicom_ct(path, (cv::Mat_<float>(1, 5) << -1000, 0, 40, 80, 1000), o);
    const DicomSlice s = read_dicom_file(path);
    test::expect_mat_exact(s.pixels, (cv::Mat_<float>(1, 5) << -1000, 0, 40, 80, 1000));
    EXPECT_DOUBLE_EQ(s.meta.rescale_slope, 2);
    EXPECT_DOUBLE_EQ(s.meta.rescale_intercept, -1000);
}

TEST(DicomFile, SignedTwelveBitWithSlopeMasksHighBits) {
    test::TempDir dir;
    const fs::path path = dir / "signed12.dcm";
    // Stored values in 12-bit two's complement; the 4 unused high bits hold junk (e.g. overlays)
    // that must be masked away.
    const std::vector<int> stored = {-2048, -1, 0, 500, 520, 540, 1000, 2047};
    std::vector<Uint16> words;
    for (int s : stored) words.push_back(static_cast<Uint16>((static_cast<unsigned>(s) & 0x0FFFu) | 0xA000u));
    write_crafted(path, 2, 4, words, [](DcmDataset& ds) {
        ds.putAndInsertUint16(DCM_BitsStored, 12);
        ds.putAndInsertUint16(DCM_HighBit, 11);
        ds.putAndInsertUint16(DCM_PixelRepresentation, 1);
        ds.putAndInsertString(DCM_RescaleSlope, "2");
        ds.putAndInsertString(DCM_RescaleIntercept, "-1000");
    });
    const DicomSlice s = read_dicom_file(path);
    cv::Mat expected(2, 4, CV_32F);
    for (size_t i = 0; i < stored.size(); ++i) expected.at<float>(static_cast<int>(i)) = 2.0f * stored[i] - 1000.0f;
    test::expect_mat_exact(s.pixels, expected);
    EXPECT_TRUE(s.meta.is_hu);
}

TEST(DicomFile, HighBitBelowTopShiftsStoredBits) {
    test::TempDir dir;
    const fs::path path = dir / "shifted.dcm";
    // BitsStored 8 at bits 11..4 (HighBit 11): value v is stored as v << 4, low nibble is junk.
    write_crafted(path, 1, 3, {static_cast<Uint16>((7u << 4) | 0xF), static_cast<Uint16>(255u << 4), 0x000F},
                  [](DcmDataset& ds) {
                      ds.putAndInsertUint16(DCM_BitsStored, 8);
                      ds.putAndInsertUint16(DCM_HighBit, 11);
                  });
    test::expect_mat_exact(read_dicom_file(path).pixels, (cv::Mat_<float>(1, 3) << 7, 255, 0));
}

TEST(DicomFile, EightBitPixelsAreRead) {
    test::TempDir dir;
    const fs::path path = dir / "eight.dcm";
    write_crafted(path, 1, 4, {}, [](DcmDataset& ds) {
        ds.putAndInsertUint16(DCM_BitsAllocated, 8);
        ds.putAndInsertUint16(DCM_BitsStored, 8);
        ds.putAndInsertUint16(DCM_HighBit, 7);
        ds.putAndInsertString(DCM_RescaleIntercept, "-100");
        const Uint8 bytes[4] = {0, 1, 100, 255};
        ds.putAndInsertUint8Array(DCM_PixelData, bytes, 4);
    });
    test::expect_mat_exact(read_dicom_file(path).pixels, (cv::Mat_<float>(1, 4) << -100, -99, 0, 155));
}

class DicomCompression : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(DicomCompression, DecodesToExactlyTheUncompressedHu) {
    const auto& [syntax, uid] = GetParam();
    test::TempDir dir;
    const cv::Mat hu = random_hu(48, 64, 7);
    DicomWriteOptions o;
    write_dicom_ct(dir / "plain.dcm", hu, o);
    o.transfer_syntax = syntax;
    write_dicom_ct(dir / "packed.dcm", hu, o);

    const DicomSlice plain = read_dicom_file(dir / "plain.dcm");
    const DicomSlice packed = read_dicom_file(dir / "packed.dcm");
    EXPECT_EQ(packed.meta.transfer_syntax, uid);
    test::expect_mat_exact(packed.pixels, plain.pixels);
    test::expect_mat_exact(packed.pixels, hu);
}

INSTANTIATE_TEST_SUITE_P(Lossless, DicomCompression,
                         ::testing::Values(std::make_pair("rle", UID_RLELosslessTransferSyntax),
                                           std::make_pair("jpeg-ls", UID_JPEGLSLosslessTransferSyntax),
                                           std::make_pair("jpeg-lossless", UID_JPEGProcess14SV1TransferSyntax)),
                         [](const auto& info) {
                             std::string name = info.param.first;
                             for (char& c : name) c = (c == '-') ? '_' : c;
                             return name;
                         });

TEST(DicomFile, LossyJpegBaselineDecodes) {
    test::TempDir dir;
    const fs::path path = dir / "baseline.dcm";
    // 8-bit CT as some old scanners and PACS exports store it, in flat 8x8 blocks that JPEG keeps.
    std::vector<Uint8> bytes(16 * 16);
    for (int r = 0; r < 16; ++r) {
        for (int c = 0; c < 16; ++c) bytes[static_cast<size_t>(r * 16 + c)] = static_cast<Uint8>(r < 8 ? 20 : 200);
    }
    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    ds.putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
    ds.putAndInsertString(DCM_SOPInstanceUID, new_dicom_uid().c_str());
    ds.putAndInsertString(DCM_Modality, "CT");
    ds.putAndInsertUint16(DCM_SamplesPerPixel, 1);
    ds.putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
    ds.putAndInsertUint16(DCM_Rows, 16);
    ds.putAndInsertUint16(DCM_Columns, 16);
    ds.putAndInsertUint16(DCM_BitsAllocated, 8);
    ds.putAndInsertUint16(DCM_BitsStored, 8);
    ds.putAndInsertUint16(DCM_HighBit, 7);
    ds.putAndInsertUint16(DCM_PixelRepresentation, 0);
    // No rescale here: DCMTK's lossy encoder rewrites RescaleIntercept (it re-bases the pixel
    // values), which is its business; the values it stands for must survive.
    ds.putAndInsertUint8Array(DCM_PixelData, bytes.data(), static_cast<unsigned long>(bytes.size()));
    DJEncoderRegistration::registerCodecs();  // a no-op when the library registered them already
    const DJ_RPLossy quality(100);
    ASSERT_TRUE(ds.chooseRepresentation(EXS_JPEGProcess1, &quality).good());
    ASSERT_TRUE(ds.canWriteXfer(EXS_JPEGProcess1));
    ASSERT_TRUE(file.saveFile(path.string().c_str(), EXS_JPEGProcess1).good());

    const DicomSlice s = read_dicom_file(path);
    EXPECT_EQ(s.meta.transfer_syntax, UID_JPEGProcess1TransferSyntax);
    ASSERT_EQ(s.pixels.size(), cv::Size(16, 16));
    EXPECT_NEAR(s.pixels.at<float>(2, 3), 20.0f, 2.0f);
    EXPECT_NEAR(s.pixels.at<float>(12, 9), 200.0f, 2.0f);
}

TEST(DicomFile, CompressedPaddedMonochrome1AlsoDecodes) {
    test::TempDir dir;
    DicomWriteOptions o;
    o.rescale_intercept = -2048;
    o.has_padding = true;
    o.pixel_padding_value = 0;
    o.photometric = "MONOCHROME1";
    o.transfer_syntax = "jpeg-ls";
    write_dicom_ct(dir / "c.dcm", (cv::Mat_<float>(1, 3) << -2048, 40, 1000), o);
    test::expect_mat_exact(read_dicom_file(dir / "c.dcm").pixels, (cv::Mat_<float>(1, 3) << -1024, 40, 1000));
}

TEST(DicomFile, UnknownTransferSyntaxIsAUsageError) {
    test::TempDir dir;
    DicomWriteOptions o;
    o.transfer_syntax = "jpeg2000";
    EXPECT_THROW(write_dicom_ct(dir / "x.dcm", hu_gradient(), o), UsageError);
    EXPECT_FALSE(fs::exists(dir / "x.dcm"));
}

TEST(DicomFile, Monochrome1KeepsHuForCt) {
    test::TempDir dir;
    DicomWriteOptions o;
    o.photometric = "MONOCHROME1";
    write_dicom_ct(dir / "m1.dcm", hu_gradient(), o);
    const DicomSlice s = read_dicom_file(dir / "m1.dcm");
    EXPECT_EQ(s.meta.photometric, "MONOCHROME1");
    test::expect_mat_exact(s.pixels, hu_gradient());
}

TEST(DicomFile, Monochrome1InvertsNonHuDataOverTheStoredRange) {
    test::TempDir dir;
    DicomWriteOptions o;
    o.modality = "MR";
    o.rescale_intercept = 0;
    o.photometric = "MONOCHROME1";
    write_dicom_ct(dir / "mr1.dcm", (cv::Mat_<float>(1, 4) << 0, 100, 1000, 65535), o);
    const DicomSlice s = read_dicom_file(dir / "mr1.dcm", ModalityPolicy::CtOrMr);
    EXPECT_FALSE(s.meta.is_hu);
    EXPECT_EQ(s.meta.modality, "MR");
    test::expect_mat_exact(s.pixels, (cv::Mat_<float>(1, 4) << 65535, 65435, 64535, 0));

    o.photometric = "MONOCHROME2";
    write_dicom_ct(dir / "mr2.dcm", (cv::Mat_<float>(1, 4) << 0, 100, 1000, 65535), o);
    test::expect_mat_exact(read_dicom_file(dir / "mr2.dcm", ModalityPolicy::CtOrMr).pixels,
                      (cv::Mat_<float>(1, 4) << 0, 100, 1000, 65535));
}

TEST(DicomFile, PixelPaddingBecomesMinus1024Hu) {
    test::TempDir dir;
    DicomWriteOptions o;
    o.rescale_intercept = -2048;
    o.has_padding = true;
    o.pixel_padding_value = 0;  // stored 0 = -2048 HU outside the scan circle
    write_dicom_ct(dir / "pad.dcm", (cv::Mat_<float>(1, 5) << -2048, -2048, -1000, 40, -2047), o);
    test::expect_mat_exact(read_dicom_file(dir / "pad.dcm").pixels,
                      (cv::Mat_<float>(1, 5) << -1024, -1024, -1000, 40, -2047));
}

TEST(DicomFile, PixelPaddingRangeLimitCoversARange) {
    test::TempDir dir;
    const fs::path path = dir / "range.dcm";
    write_crafted(path, 1, 5, {0, 5, 10, 11, 1064}, [](DcmDataset& ds) {
        ds.putAndInsertString(DCM_RescaleIntercept, "-1024");
        ds.putAndInsertUint16(DCM_PixelPaddingValue, 10);
        ds.putAndInsertUint16(DCM_PixelPaddingRangeLimit, 0);
    });
    test::expect_mat_exact(read_dicom_file(path).pixels, (cv::Mat_<float>(1, 5) << -1024, -1024, -1024, -1013, 40));
}

TEST(DicomFile, SignedPixelPaddingValue) {
    test::TempDir dir;
    const fs::path path = dir / "spad.dcm";
    write_crafted(path, 1, 3, {static_cast<Uint16>(-2000), static_cast<Uint16>(-1000), 40}, [](DcmDataset& ds) {
        ds.putAndInsertUint16(DCM_PixelRepresentation, 1);
        ds.putAndInsertSint16(DCM_PixelPaddingValue, -2000);
    });
    test::expect_mat_exact(read_dicom_file(path).pixels, (cv::Mat_<float>(1, 3) << -1024, -1000, 40));
}

TEST(DicomFile, PixelPaddingOfNonHuDataBecomesTheMinimum) {
    test::TempDir dir;
    DicomWriteOptions o;
    o.modality = "MR";
    o.rescale_intercept = 0;
    o.has_padding = true;
    o.pixel_padding_value = 0;
    write_dicom_ct(dir / "mrpad.dcm", (cv::Mat_<float>(1, 4) << 0, 300, 200, 500), o);
    test::expect_mat_exact(read_dicom_file(dir / "mrpad.dcm", ModalityPolicy::CtOrMr).pixels,
                      (cv::Mat_<float>(1, 4) << 200, 300, 200, 500));
}

TEST(DicomModality, MrIsRejectedUnderCtOnlyWithAHint) {
    test::TempDir dir;
    const fs::path path = dir / "brain_mr.dcm";
    DicomWriteOptions o;
    o.modality = "MR";
    write_dicom_ct(path, hu_gradient(), o);
    test::expect_input_error([&] { read_dicom_file(path); },
                       {path.string(), "modality MR where CT is expected (a CT model does not read MRI"});
    test::expect_input_error([&] { load_image(path); }, {path.string(), "modality MR"});
}

TEST(DicomModality, CtIsRejectedUnderMrOnlyAndPoliciesParse) {
    test::TempDir dir;
    const fs::path path = dir / "head_ct.dcm";
    write_dicom_ct(path, hu_gradient(), DicomWriteOptions{});
    test::expect_input_error([&] { read_dicom_file(path, ModalityPolicy::MrOnly); },
                             {path.string(), "modality CT where MR is expected (an MR model does not read CT"});
    EXPECT_EQ(parse_modality_policy("MR"), ModalityPolicy::MrOnly);
    EXPECT_EQ(parse_modality_policy("mri"), ModalityPolicy::MrOnly);
    EXPECT_EQ(parse_modality_policy("ct+mr"), ModalityPolicy::CtOrMr);
    EXPECT_EQ(parse_modality_policy("ct"), ModalityPolicy::CtOnly);
    test::expect_usage_error([] { parse_modality_policy("pet"); }, {"pet", "ct, mr, ct+mr, any"});
}

TEST(DicomModality, MrIsAcceptedUnderCtOrMr) {
    test::TempDir dir;
    DicomWriteOptions o;
    o.modality = "MR";
    o.rescale_intercept = 0;
    write_dicom_ct(dir / "mr.dcm", (cv::Mat_<float>(1, 2) << 7, 9), o);
    const DicomSlice s = read_dicom_file(dir / "mr.dcm", ModalityPolicy::CtOrMr);
    EXPECT_EQ(s.meta.modality, "MR");
    EXPECT_FALSE(s.meta.is_hu);
    test::expect_mat_exact(s.pixels, (cv::Mat_<float>(1, 2) << 7, 9));
}

TEST(DicomModality, UltrasoundIsRejectedUnlessAnyModality) {
    test::TempDir dir;
    const fs::path path = dir / "us.dcm";
    DicomWriteOptions o;
    o.modality = "US";
    write_dicom_ct(path, hu_gradient(), o);
    test::expect_input_error([&] { read_dicom_file(path); }, {path.string(), "modality US where CT is expected"});
    test::expect_input_error([&] { read_dicom_file(path, ModalityPolicy::CtOrMr); },
                       {path.string(), "modality US where CT or MR is expected"});
    EXPECT_NO_THROW(read_dicom_file(path, ModalityPolicy::Any));
}

TEST(DicomErrors, MultiFrameIsUnsupported) {
    test::TempDir dir;
    const fs::path path = dir / "cine.dcm";
    write_crafted(path, 1, 2, {1, 2, 3, 4}, [](DcmDataset& ds) { ds.putAndInsertString(DCM_NumberOfFrames, "2"); });
    test::expect_input_error([&] { read_dicom_file(path); }, {path.string(), "multi-frame", "not supported"});
}

TEST(DicomErrors, ColourIsUnsupported) {
    test::TempDir dir;
    const fs::path path = dir / "rgb.dcm";
    write_crafted(path, 1, 1, {}, [](DcmDataset& ds) {
        ds.putAndInsertUint16(DCM_SamplesPerPixel, 3);
        ds.putAndInsertString(DCM_PhotometricInterpretation, "RGB");
        ds.putAndInsertUint16(DCM_BitsAllocated, 8);
        ds.putAndInsertUint16(DCM_BitsStored, 8);
        ds.putAndInsertUint16(DCM_HighBit, 7);
        const Uint8 bytes[4] = {10, 20, 30, 0};
        ds.putAndInsertUint8Array(DCM_PixelData, bytes, 4);
    });
    test::expect_input_error([&] { read_dicom_file(path); }, {path.string(), "colour", "RGB", "not supported"});
}

TEST(DicomErrors, NoPixelDataIsNotAnImage) {
    test::TempDir dir;
    const fs::path path = dir / "report.dcm";
    write_crafted(path, 2, 2, {}, [](DcmDataset&) {});
    EXPECT_TRUE(is_dicom_file(path));
    test::expect_input_error([&] { read_dicom_file(path); }, {path.string(), "no pixel data"});
}

TEST(DicomErrors, ShortPixelDataIsReported) {
    test::TempDir dir;
    const fs::path path = dir / "short.dcm";
    write_crafted(path, 4, 4, {1, 2, 3, 4}, [](DcmDataset&) {});  // 16 pixels announced, 4 present
    test::expect_input_error([&] { read_dicom_file(path); }, {path.string(), "truncated"});
}

// Issue 28: a 600-byte file claiming 16384 x 16384 pixels is refused from its attributes, before any
// pixel buffer is allocated (it used to take 1.2 GB before "truncated"); 65535 x 65535 too (it used to
// end in std::bad_alloc without the file's name). The limit is configurable.
TEST(DicomErrors, HugeClaimedSizeRefusedBeforeAllocation) {
    test::TempDir dir;
    for (const int side : {16384, 65535}) {
        const fs::path path = dir / ("huge" + std::to_string(side) + ".dcm");
        write_crafted(path, side, side, {1, 2, 3, 4}, [](DcmDataset&) {});
        EXPECT_LT(fs::file_size(path), 1000u);
        test::expect_input_error([&] { read_dicom_file(path); },
                                 {path.string(), std::to_string(side) + " x " + std::to_string(side),
                                  "limit of 16777216 pixels per slice"});
    }
    const fs::path small = dir / "small.dcm";
    write_crafted(small, 4, 4, std::vector<Uint16>(16, 7), [](DcmDataset&) {});
    EXPECT_NO_THROW(read_dicom_file(small));
    const ReadLimits saved = read_limits();
    ReadLimits tight = saved;
    tight.max_pixels_per_slice = 15;
    set_read_limits(tight);
    test::expect_input_error([&] { read_dicom_file(small); }, {small.string(), "limit of 15 pixels"});
    // A series: the voxels read for one input, and the slices of one series, are bounded too.
    tight = saved;
    tight.max_voxels = 40;
    set_read_limits(tight);
    fs::create_directories(dir / "series");
    for (int k = 0; k < 3; ++k) {
        write_crafted(dir / "series" / ("s" + std::to_string(k) + ".dcm"), 4, 4, std::vector<Uint16>(16, 7),
                      [&](DcmDataset& ds) { ds.putAndInsertString(DCM_InstanceNumber, std::to_string(k).c_str()); });
    }
    test::expect_input_error([&] { read_dicom_series({dir / "series"}); }, {"more than 40 voxels"});
    tight = saved;
    tight.max_slices = 2;
    set_read_limits(tight);
    test::expect_input_error([&] { read_dicom_series({dir / "series"}); }, {"3 slices, over the limit of 2"});
    set_read_limits(saved);
    EXPECT_EQ(read_dicom_series({dir / "series"}).front().depth(), 3);
    EXPECT_THROW(set_read_limits(ReadLimits{0, 1, 1}), UsageError);
}

// Issue 28: a rescale that overflows float intensities is refused (RescaleSlope 1e300 used to be taken).
TEST(DicomErrors, ImplausibleRescaleRefused) {
    test::TempDir dir;
    for (const char* slope : {"1e300", "2e6"}) {
        const fs::path path = dir / (std::string("slope") + slope + ".dcm");
        write_crafted(path, 2, 2, {1, 2, 3, 4}, [&](DcmDataset& ds) { ds.putAndInsertString(DCM_RescaleSlope, slope); });
        test::expect_input_error([&] { read_dicom_file(path); }, {path.string(), "implausible RescaleSlope"});
    }
    const fs::path ok = dir / "ok.dcm";
    write_crafted(ok, 2, 2, {1, 2, 3, 4}, [&](DcmDataset& ds) { ds.putAndInsertString(DCM_RescaleSlope, "2500"); });
    EXPECT_FLOAT_EQ(read_dicom_file(ok).pixels.at<float>(0, 1), 5000.f);
}

TEST(DicomErrors, FileCutInHalfNamesTheFile) {
    test::TempDir dir;
    const fs::path path = dir / "cut.dcm";
    write_dicom_ct(path, random_hu(32, 32, 1), DicomWriteOptions{});
    truncate_to_half(path);
    test::expect_input_error([&] { read_dicom_file(path); }, {path.string()});
    test::expect_input_error([&] { load_image(path); }, {path.string()});
}

TEST(DicomErrors, CompressedFileCutInHalfNamesTheFile) {
    test::TempDir dir;
    const fs::path path = dir / "cut_rle.dcm";
    DicomWriteOptions o;
    o.transfer_syntax = "rle";
    write_dicom_ct(path, random_hu(32, 32, 2), o);
    truncate_to_half(path);
    test::expect_input_error([&] { read_dicom_file(path); }, {path.string()});
}

TEST(DicomErrors, EmptyAndMissingFilesNameTheFile) {
    test::TempDir dir;
    const fs::path empty = dir / "empty.dcm";
    test::write_text(empty, "");
    EXPECT_FALSE(is_dicom_file(empty));
    test::expect_input_error([&] { read_dicom_file(empty); }, {empty.string(), "empty"});
    test::expect_input_error([&] { load_image(empty); }, {empty.string(), "empty"});
    const fs::path missing = dir / "missing.dcm";
    test::expect_input_error([&] { read_dicom_file(missing); }, {missing.string(), "not found"});
}

TEST(DicomErrors, TextNamedDcmIsNotDicom) {
    test::TempDir dir;
    const fs::path path = dir / "notes.dcm";
    test::write_text(path, "this is not a DICOM file, just some text that is long enough to fill a preamble. "
                           "this is not a DICOM file, just some text that is long enough to fill a preamble.");
    EXPECT_FALSE(is_dicom_file(path));
    test::expect_input_error([&] { read_dicom_file(path); }, {path.string()});
    test::expect_input_error([&] { load_image(path); }, {path.string()});
}

TEST(DicomFile, FileWithoutPreambleIsDetectedByContent) {
    test::TempDir dir;
    const fs::path path = dir / "IM0001";  // old-style: no preamble, no meta header, no extension
    {
        DcmFileFormat file;
        DcmDataset& ds = *file.getDataset();
        ds.putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
        ds.putAndInsertString(DCM_Modality, "CT");
        ds.putAndInsertUint16(DCM_SamplesPerPixel, 1);
        ds.putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
        ds.putAndInsertUint16(DCM_Rows, 1);
        ds.putAndInsertUint16(DCM_Columns, 2);
        ds.putAndInsertUint16(DCM_BitsAllocated, 16);
        ds.putAndInsertUint16(DCM_BitsStored, 12);
        ds.putAndInsertUint16(DCM_HighBit, 11);
        ds.putAndInsertUint16(DCM_PixelRepresentation, 0);
        ds.putAndInsertString(DCM_RescaleIntercept, "-1024");
        const Uint16 words[2] = {1024, 1064};
        ds.putAndInsertUint16Array(DCM_PixelData, words, 2);
        ASSERT_TRUE(file.saveFile(path.string().c_str(), EXS_LittleEndianImplicit, EET_ExplicitLength, EGL_recalcGL,
                                  EPD_noChange, 0, 0, EWM_dataset)
                        .good());
    }
    std::string head = read_file(path).substr(0, 2);
    ASSERT_EQ(head, std::string("\x08\x00", 2));  // starts right at a group 0008 tag
    EXPECT_TRUE(is_dicom_file(path));
    const DicomSlice s = load_image(path);
    test::expect_mat_exact(s.pixels, (cv::Mat_<float>(1, 2) << 0, 40));
    EXPECT_TRUE(s.meta.is_hu);
}

TEST(DicomFile, UidsAreUniqueAndValid) {
    const std::string a = new_dicom_uid(), b = new_dicom_uid();
    EXPECT_NE(a, b);
    EXPECT_LE(a.size(), 64u);
    EXPECT_EQ(a.find_first_not_of("0123456789."), std::string::npos);
}

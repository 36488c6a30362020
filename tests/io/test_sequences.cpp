// Multi-sequence MR cases: sequences found by file stem, BIDS suffix, folder name or SeriesDescription,
// stacked as channels in the order asked; clear errors for what is missing, ambiguous or mismatched.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/sequences.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

cv::Mat flat8(int size, int value) { return cv::Mat(size, size, CV_8UC1, cv::Scalar(value)); }

void write_png(const fs::path& p, const cv::Mat& m) {
    fs::create_directories(p.parent_path());
    ASSERT_TRUE(cv::imwrite(p.string(), m));
}

// A one-series DICOM MR folder whose slices all hold `value`.
void write_mr_series(const fs::path& folder, const std::string& description, int slices, float value, int series) {
    DicomWriteOptions o;
    o.modality = "MR";
    o.series_description = description;
    o.series_uid = "1.2.3.4." + std::to_string(series);
    o.series_number = series;
    o.rescale_intercept = 0;
    for (int k = 0; k < slices; ++k) {
        o.instance_number = k + 1;
        o.position = {0, 0, 5.0 * k};
        o.sop_uid = o.series_uid + "." + std::to_string(k + 1);
        write_dicom_ct(folder / ("IM" + std::to_string(k) + ".dcm"), cv::Mat(8, 8, CV_32F, cv::Scalar(value)), o);
    }
}

}  // namespace

TEST(Sequences, PngCaseStacksTheAskedOrder) {
    test::TempDir d;
    write_png(d / "case" / "t1.png", flat8(16, 10));
    write_png(d / "case" / "sub-01_flair.png", flat8(16, 20));  // BIDS-style: ends with _flair
    write_png(d / "case" / "SWI_Phase.png", flat8(16, 30));
    EXPECT_EQ(case_sequences(d / "case"), (std::vector<std::string>{"t1", "swi_phase", "sub-01_flair"}));
    EXPECT_TRUE(is_sequence_case(d / "case", {"flair"}));
    EXPECT_FALSE(is_sequence_case(d.path(), {"flair"}));
    const DicomSlice s = read_sequence_slice(d / "case", {"swi_phase", "t1", "flair"}, ModalityPolicy::MrOnly);
    ASSERT_EQ(s.pixels.channels(), 3);
    EXPECT_EQ(s.meta.sequences, (std::vector<std::string>{"swi_phase", "t1", "flair"}));
    EXPECT_TRUE(s.meta.already_windowed);
    EXPECT_EQ(s.meta.path, (d / "case").string());
    const cv::Vec3f v = s.pixels.at<cv::Vec3f>(3, 3);
    EXPECT_FLOAT_EQ(v[0], 30.f);
    EXPECT_FLOAT_EQ(v[1], 10.f);
    EXPECT_FLOAT_EQ(v[2], 20.f);
}

TEST(Sequences, MissingAmbiguousAndMismatchedSequencesAreClearErrors) {
    test::TempDir d;
    write_png(d / "a" / "t1.png", flat8(16, 10));
    write_png(d / "a" / "t2.png", flat8(16, 20));
    test::expect_input_error([&] { read_sequence_slice(d / "a", {"t1", "flair"}, ModalityPolicy::MrOnly); },
                             {(d / "a").string(), "no MR sequence 'flair'", "t1, t2"});
    write_png(d / "b" / "t2.png", flat8(16, 10));
    write_png(d / "b" / "x_t2.png", flat8(16, 20));
    test::expect_input_error([&] { read_sequence_slice(d / "b", {"t2"}, ModalityPolicy::MrOnly); },
                             {"'t2' matches several"});
    // Another in-plane size is resampled (with a warning); another slice count is an error.
    write_png(d / "c" / "t1.png", flat8(16, 10));
    write_png(d / "c" / "t2.png", flat8(32, 20));
    const Volume v = read_sequence_case(d / "c", {"t1", "t2"}, ModalityPolicy::MrOnly);
    EXPECT_EQ(v.slices.front().size(), cv::Size(16, 16));
    ASSERT_EQ(v.warnings.size(), 1u);
    EXPECT_NE(v.warnings.front().find("'t2' resampled from 32x32 to 16x16"), std::string::npos);
    write_mr_series(d / "e" / "t1", "T1 SE", 3, 100, 1);
    write_mr_series(d / "e" / "t2", "T2 TSE", 4, 200, 2);
    test::expect_input_error([&] { read_sequence_case(d / "e", {"t1", "t2"}, ModalityPolicy::MrOnly); },
                             {"'t2' has 4 slices, 't1' 3"});
}

TEST(Sequences, DicomSeriesByFolderOrDescriptionAndTheModalityPolicy) {
    test::TempDir d;
    write_mr_series(d / "case" / "t2", "T2 TSE axial", 3, 200, 1);      // by folder name
    write_mr_series(d / "case" / "series7", "SWI Phase filtered", 3, 1000, 2);  // by the words of its description
    const Volume v = read_sequence_case(d / "case", {"t2", "swi_phase"}, ModalityPolicy::MrOnly);
    ASSERT_EQ(v.depth(), 3);
    ASSERT_EQ(v.slices.front().channels(), 2);
    EXPECT_EQ(v.slice_meta.front().modality, "MR");
    const cv::Vec2f px = v.slices[1].at<cv::Vec2f>(2, 2);
    EXPECT_FLOAT_EQ(px[0], 200.f);
    EXPECT_FLOAT_EQ(px[1], 1000.f);
    EXPECT_LT(v.slice_meta[0].position[2], v.slice_meta[2].position[2]);
    test::expect_input_error([&] { read_sequence_case(d / "case", {"t2"}, ModalityPolicy::CtOnly); },
                             {"modality MR where CT is expected"});
}

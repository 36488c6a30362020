// The analysis pipeline (infer/study.hpp): reading every kind of input into a StudyInput, the study
// rule, and analyze_study with a classifier and a segmenter (the small fixed models of tests/golden).
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/log_capture.hpp"
#include "support/test_util.hpp"
#include "support/zip_writer.hpp"

using namespace hemoscan;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fs::path(HEMOSCAN_SOURCE_DIR) / "tests" / "golden";

cv::Mat head(int size, double blob_hu) {
    cv::Mat hu(size, size, CV_32F, cv::Scalar(-1000));
    cv::circle(hu, {size / 2, size / 2}, size * 2 / 5, cv::Scalar(35), -1);
    if (blob_hu != 0) cv::circle(hu, {size / 2 + 6, size / 2 - 6}, 6, cv::Scalar(blob_hu), -1);
    return hu;
}

// A CT series of `n` slices, 5 mm apart, into `dir`.
void write_series(const fs::path& dir, const std::string& series_uid, int n) {
    for (int i = 0; i < n; ++i) {
        DicomWriteOptions o;
        o.study_uid = "1.2.826.0.1.3680043.10.2.1";
        o.series_uid = series_uid;
        o.instance_number = i + 1;
        o.position = {0, 0, 5.0 * i};
        write_dicom_ct(dir / (series_uid + "_" + std::to_string(i) + ".dcm"), head(64, i == 1 ? 70 : 0), o);
    }
}

}  // namespace

TEST(StudyInput, FoldersOfSeriesAndImages) {
    TempDir d;
    write_series(d / "two", "1.2.3.1", 3);
    write_series(d / "two", "1.2.3.2", 2);
    auto all = read_study_inputs(d / "two", ModalityPolicy::CtOnly);
    ASSERT_EQ(all.size(), 2u);
    // Named by number and SeriesNumber, never by SeriesInstanceUID (issue 28, item 5); largest first.
    EXPECT_EQ(all[0].name, (d / "two").string() + "#series 1 of 2 (SeriesNumber 1)");
    EXPECT_EQ(all[1].name, (d / "two").string() + "#series 2 of 2 (SeriesNumber 1)");
    EXPECT_EQ(all[0].kind, "series");
    EXPECT_EQ(all[0].slices.size(), 3u);
    EXPECT_TRUE(all[0].is_volume());
    EXPECT_TRUE(all[0].slices[0].meta.is_hu);
    EXPECT_NEAR(all[0].volume.geometry.spacing[2], 5.0, 1e-6);
    EXPECT_EQ(all[1].slices.size(), 2u);

    auto largest = read_study_inputs(d / "two", ModalityPolicy::CtOnly, SeriesChoice::Largest);
    ASSERT_EQ(largest.size(), 1u);
    EXPECT_EQ(largest[0].name, (d / "two").string());
    ASSERT_FALSE(largest[0].warnings.empty());
    EXPECT_NE(largest[0].warnings.back().find("2 series; using the largest: series 1 of 2 (SeriesNumber 1, 3 slices)"),
              std::string::npos)
        << largest[0].warnings.back();

    // A folder of images: one input per image, in name order; no spacing known.
    fs::create_directories(d / "png");
    cv::imwrite((d / "png" / "b.png").string(), cv::Mat(40, 40, CV_8U, cv::Scalar(90)));
    cv::imwrite((d / "png" / "a.png").string(), cv::Mat(30, 50, CV_8U, cv::Scalar(10)));
    auto images = read_study_inputs(d / "png", ModalityPolicy::CtOnly);
    ASSERT_EQ(images.size(), 2u);
    EXPECT_EQ(images[0].name, (d / "png" / "a.png").string());
    EXPECT_EQ(images[0].kind, "image");
    EXPECT_FALSE(images[0].is_volume());
    EXPECT_FALSE(images[0].spacing_known);
    EXPECT_EQ(images[0].slices[0].pixels.cols, 50);

    // One DICOM file: a one-slice volume.
    auto one = read_study_inputs(d / "two" / "1.2.3.1_0.dcm", ModalityPolicy::CtOnly);
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].kind, "dicom");
    EXPECT_TRUE(one[0].is_volume());
    EXPECT_TRUE(one[0].spacing_known);
    EXPECT_TRUE(all[0].spacing_known);
}

// Issue 28: a series whose PixelSpacing is negative (or missing) is read with 1 mm placeholders; the input
// must say that its millimetres are not the file's (it used to say spacing_known: true, and a bleed of
// 3.43 mL came out as 0.86 mL).
TEST(StudyInput, SpacingNotFromTheFileIsFlagged) {
    TempDir d;
    for (const double spacing : {-0.5, 0.0}) {
        const fs::path dir = d / (spacing < 0 ? "negative" : "zero");
        for (int i = 0; i < 3; ++i) {
            DicomWriteOptions o;
            o.series_uid = "1.2.3.9";
            o.instance_number = i + 1;
            o.position = {0, 0, 5.0 * i};
            o.pixel_spacing = {spacing, spacing};
            write_dicom_ct(dir / (std::to_string(i) + ".dcm"), head(64, 0), o);
        }
        SCOPED_TRACE(dir.filename().string());
        const auto in = read_study_inputs(dir, ModalityPolicy::CtOnly);
        ASSERT_EQ(in.size(), 1u);
        EXPECT_FALSE(in[0].spacing_known);
        ASSERT_FALSE(in[0].warnings.empty());
        EXPECT_NE(in[0].warnings.back().find("not in mm or mL"), std::string::npos) << in[0].warnings.back();
        EXPECT_EQ(in[0].warnings.back().find(dir.string()), std::string::npos);  // no server paths
    }
}

TEST(StudyInput, NiftiDecidesHuOnce) {
    TempDir d;
    Volume ct;
    Volume raw;
    for (int k = 0; k < 3; ++k) {
        ct.slices.push_back(head(32, 0));
        raw.slices.push_back(cv::Mat(32, 32, CV_32F, cv::Scalar(100 + k)));
    }
    ct.geometry.spacing = {0.8, 0.8, 4};
    write_nifti(d / "ct.nii.gz", ct);
    write_nifti(d / "raw.nii", raw);
    auto a = read_study_inputs(d / "ct.nii.gz", ModalityPolicy::CtOnly);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].kind, "nifti");
    ASSERT_EQ(a[0].items.size(), 3u);
    EXPECT_EQ(a[0].items[2], "slice_003");
    for (const auto& s : a[0].slices) EXPECT_TRUE(s.meta.is_hu);
    auto b = read_study_inputs(d / "raw.nii", ModalityPolicy::CtOnly);
    for (const auto& s : b[0].slices) EXPECT_FALSE(s.meta.is_hu);

    // Volumes built in code get the same rule, per slice.
    Volume built;
    built.slices = {head(16, 0), cv::Mat(16, 16, CV_32F, cv::Scalar(5))};
    fill_slice_meta(built);
    ASSERT_EQ(built.slice_meta.size(), 2u);
    EXPECT_TRUE(built.slice_meta[0].is_hu);
    EXPECT_FALSE(built.slice_meta[1].is_hu);
    EXPECT_TRUE(looks_like_hu(-900));
    EXPECT_FALSE(looks_like_hu(-899));
}

TEST(StudyInput, BadInputsNameThePath) {
    TempDir d;
    fs::create_directories(d / "empty");
    test::expect_input_error([&] { read_study_inputs(d / "empty", ModalityPolicy::CtOnly); },
                             {(d / "empty").string(), "no images or DICOM files"});
    test::expect_input_error([&] { read_study_inputs(d / "missing", ModalityPolicy::CtOnly); },
                             {(d / "missing").string(), "no such file"});
    test::write_text(d / "notes.txt", "hello");
    test::expect_input_error([&] { read_study_inputs(d / "notes.txt", ModalityPolicy::CtOnly); },
                             {(d / "notes.txt").string()});
    test::expect_input_error([&] { read_study_files({}, {}, {}, ModalityPolicy::CtOnly); }, {"no image"});
}

TEST(AnalyzeStudy, OneRuleForTheStudyAndHeatmapsOfOneLabel) {
    TempDir d;
    write_series(d / "s", "1.2.3.9", 4);
    Predictor cls(kModels / "cls.pt", 1);
    SegPredictor seg(kModels / "seg.pt", 1);
    const StudyInput in = read_study_inputs(d / "s", cls.modality()).front();

    AnalysisOptions o;
    o.heatmaps = HeatmapLabel::Study;
    const StudyResult r = analyze_study(in, &cls, &seg, o);
    ASSERT_EQ(r.slices.size(), 4u);
    ASSERT_EQ(r.heatmaps.size(), 4u);
    // The study: per label the maximum over the slices.
    for (size_t l = 0; l < cls.labels().size(); ++l) {
        double m = 0;
        for (const auto& p : r.slices) m = std::max(m, p.probabilities[l]);
        EXPECT_DOUBLE_EQ(r.study.probabilities[l], m) << l;
        EXPECT_EQ(r.study.decisions[l], m >= cls.thresholds()[l] ? 1 : 0) << l;
    }
    const auto& sp = r.study.probabilities;
    EXPECT_EQ(r.heatmap_label, static_cast<int>(std::max_element(sp.begin(), sp.end()) - sp.begin()));
    for (size_t i = 0; i < r.slices.size(); ++i) {
        EXPECT_LE(r.slices[i].probabilities[static_cast<size_t>(r.heatmap_label)],
                  r.slices[r.top_slice].probabilities[static_cast<size_t>(r.heatmap_label)]);
        double lo, hi;
        cv::minMaxLoc(r.heatmaps[i], &lo, &hi);
        EXPECT_GE(lo, 0.0);
        EXPECT_LE(hi, 1.0 + 1e-6);
        EXPECT_EQ(r.heatmaps[i].size(), r.samples[i].image.size());
    }
    // A threshold override decides every label, study and slices alike.
    o.threshold = 0.0;
    const StudyResult all = analyze_study(in, &cls, nullptr, o);
    for (int dcs : all.study.decisions) EXPECT_EQ(dcs, 1);
    EXPECT_FALSE(all.segmented);

    // Segmentation in the input's geometry; the slices' bleed adds up to the study's.
    ASSERT_TRUE(r.segmented);
    EXPECT_EQ(r.segmentation.result.labels.depth(), 4);
    EXPECT_EQ(r.segmentation.slice_bleed_ml.size(), 4u);
    double sum = 0;
    for (double v : r.segmentation.slice_bleed_ml) sum += v;
    EXPECT_NEAR(sum, r.segmentation.result.bleed_volume_ml, 1e-9 + 1e-9 * sum);
    // The same as the segmenter on the volume itself.
    EXPECT_DOUBLE_EQ(seg.segment(in.volume).bleed_volume_ml, r.segmentation.result.bleed_volume_ml);

    EXPECT_THROW(analyze_study(in, nullptr, nullptr), UsageError);
}

TEST(AnalyzeStudy, SeparateImagesAreSegmentedOneByOneWithAWarning) {
    TempDir d;
    cv::Mat a, b;
    head(64, 70).convertTo(a, CV_8U, 1.0, 0);  // grey values; spacing unknown
    head(48, 0).convertTo(b, CV_8U, 1.0, 0);
    cv::imwrite((d / "a.png").string(), a);
    cv::imwrite((d / "b.png").string(), b);
    Predictor cls(kModels / "cls.pt", 1);
    SegPredictor seg(kModels / "seg.pt", 1);
    const StudyInput in = read_study_files({}, {d / "a.png", d / "b.png"}, {"first", "second"}, cls.modality());
    EXPECT_EQ(in.kind, "images");
    EXPECT_EQ(in.items, (std::vector<std::string>{"first", "second"}));
    const StudyResult r = analyze_study(in, &cls, &seg);
    ASSERT_EQ(r.segmentation.result.labels.slices.size(), 2u);
    EXPECT_EQ(r.segmentation.result.labels.slices[1].cols, 48);  // each image its own size
    EXPECT_FALSE(r.segmentation.spacing_known);
    ASSERT_FALSE(r.warnings.empty());
    EXPECT_NE(r.warnings.back().find("spacing"), std::string::npos);
    EXPECT_TRUE(r.heatmaps.empty());  // none asked for
}

// A zip of a DICOM series reads as the same volume as the folder it came from; a zip of images as one
// study of images; other entries are skipped with a warning; mixed or empty zips are refused.
TEST(StudyInput, ZipsOfSeriesAndImages) {
    TempDir d;
    write_series(d / "series", "1.2.3.9", 4);
    std::vector<std::pair<std::string, std::string>> entries;
    for (const auto& e : fs::directory_iterator(d / "series")) {
        entries.emplace_back("study/" + e.path().filename().string(), read_file(e.path()));
    }
    entries.emplace_back("study/readme.txt", "not an image");
    entries.emplace_back("inner.zip", std::string("PK\x03\x04 a zip in the zip"));
    test::write_zip(d / "series.zip", entries);
    const auto folder = read_study_inputs(d / "series", ModalityPolicy::CtOnly);
    const auto zip = read_study_inputs(d / "series.zip", ModalityPolicy::CtOnly);
    ASSERT_EQ(zip.size(), 1u);
    EXPECT_EQ(zip[0].name, (d / "series.zip").string());
    EXPECT_EQ(zip[0].kind, "series");
    ASSERT_EQ(zip[0].slices.size(), 4u);
    EXPECT_NEAR(zip[0].volume.geometry.spacing[2], 5.0, 1e-6);
    EXPECT_EQ(zip[0].items[0], "slice 1");
    for (size_t k = 0; k < 4; ++k) {
        EXPECT_EQ(cv::norm(zip[0].slices[k].pixels, folder[0].slices[k].pixels, cv::NORM_INF), 0.0) << k;
    }
    std::string warnings;
    for (const auto& w : zip[0].warnings) warnings += w + "\n";
    EXPECT_NE(warnings.find("1 file(s) in the zip skipped"), std::string::npos) << warnings;
    EXPECT_NE(warnings.find("1 zip(s) inside the zip skipped"), std::string::npos) << warnings;

    std::vector<uchar> png;
    cv::imencode(".png", cv::Mat(30, 40, CV_8U, cv::Scalar(90)), png);
    const std::string png_bytes(png.begin(), png.end());
    test::write_zip(d / "images.zip", {{"x/b.png", png_bytes}, {"a.png", png_bytes}});
    const auto images = read_study_inputs(d / "images.zip", ModalityPolicy::CtOnly);
    ASSERT_EQ(images.size(), 1u);
    EXPECT_EQ(images[0].kind, "images");
    EXPECT_EQ(images[0].items, (std::vector<std::string>{"b.png", "a.png"}));  // archive order
    EXPECT_FALSE(images[0].spacing_known);

    test::write_zip(d / "mixed.zip", {{"a.png", png_bytes}, {"b.dcm", read_file(d / "series" / "1.2.3.9_0.dcm")}});
    test::expect_input_error([&] { read_study_inputs(d / "mixed.zip", ModalityPolicy::CtOnly); },
                             {"mixed.zip", "mixes"});
    test::write_zip(d / "empty.zip", {{"readme.txt", "text"}});
    test::expect_input_error([&] { read_study_inputs(d / "empty.zip", ModalityPolicy::CtOnly); },
                             {"empty.zip", "no image or DICOM file"});
    test::write_text(d / "broken.zip", "PK\x03\x04 and nothing else");
    test::expect_input_error([&] { read_study_inputs(d / "broken.zip", ModalityPolicy::CtOnly); }, {"broken.zip"});
}

// Issue 28 (item 5): a zip's DICOM files are read from a scratch folder under the system's temporary
// folder; warnings, log lines and errors named those files ("/tmp/hemoscan-zip-.../entry_00004.dcm")
// and the series by its SeriesInstanceUID. They now name the entries as the zip has them.
TEST(StudyInput, ZipMessagesNameEntriesNotScratchFiles) {
    TempDir d;
    write_series(d / "series", "1.2.3.77", 3);
    std::vector<std::pair<std::string, std::string>> entries;
    for (int i = 0; i < 3; ++i) {
        entries.emplace_back("scan/IM" + std::to_string(i) + ".dcm",
                             read_file(d / "series" / ("1.2.3.77_" + std::to_string(i) + ".dcm")));
    }
    entries.emplace_back("scan/IM9.dcm", entries[1].second);  // the second slice exported twice
    test::write_zip(d / "dup.zip", entries);

    test::LogCapture log;
    const auto in = read_study_inputs(d / "dup.zip", ModalityPolicy::CtOnly);
    ASSERT_EQ(in.size(), 1u);
    EXPECT_EQ(in[0].slices.size(), 3u);
    std::string warnings;
    for (const auto& w : in[0].warnings) warnings += w + "\n";
    EXPECT_NE(warnings.find("series 1 of 1 (SeriesNumber 1, 3 slices): duplicate slice at position 5 mm: kept "
                            "scan/IM1.dcm (InstanceNumber 2), dropped scan/IM9.dcm (InstanceNumber 2)"),
              std::string::npos)
        << warnings;
    const std::string logged = log.text();
    for (const std::string& text : {warnings, logged}) {
        for (const std::string& id : {std::string("1.2.3.77"), std::string("hemoscan-zip"), std::string("entry_0")}) {
            EXPECT_EQ(text.find(id), std::string::npos) << id << " in:\n" << text;
        }
    }
    const size_t first = logged.find("duplicate slice");
    ASSERT_NE(first, std::string::npos) << logged;
    EXPECT_EQ(logged.find("duplicate slice", first + 1), std::string::npos) << "logged twice:\n" << logged;

    // An unreadable entry: the error names the zip and the entry, not the scratch file.
    entries.emplace_back("scan/broken.dcm", std::string(128, '\0') + "DICM" + std::string(10, 'x'));
    test::write_zip(d / "broken_entry.zip", entries);
    try {
        read_study_inputs(d / "broken_entry.zip", ModalityPolicy::CtOnly);
        FAIL() << "no InputError";
    } catch (const InputError& e) {
        const std::string what = e.what();
        EXPECT_EQ(what.rfind((d / "broken_entry.zip").string() + ": scan/broken.dcm: ", 0), 0u) << what;
        EXPECT_EQ(what.find("hemoscan-zip"), std::string::npos) << what;
    }
    std::vector<uchar> png;
    cv::imencode(".png", cv::Mat(30, 40, CV_8U, cv::Scalar(90)), png);
    const std::string png_bytes(png.begin(), png.end());
    const std::string cut = png_bytes.substr(0, png_bytes.size() - 20);  // no IEND chunk
    test::write_zip(d / "cut.zip", {{"a.png", png_bytes}, {"pics/cut.png", cut}});
    try {
        read_study_inputs(d / "cut.zip", ModalityPolicy::CtOnly);
        FAIL() << "no InputError";
    } catch (const InputError& e) {
        const std::string what = e.what();
        EXPECT_EQ(what.rfind((d / "cut.zip").string() + ": cut.png: ", 0), 0u) << what;
        EXPECT_EQ(what.find("hemoscan-zip"), std::string::npos) << what;
    }
}

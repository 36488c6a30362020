// Synthetic cohorts on disk: DICOM read back by hemoscan and by dcmdump, shuffled InstanceNumbers,
// NIfTI image and label map, PNG slices + manifest.csv + studies.csv, same seed => same bytes, CLI.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/synth/synth.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

SynthOptions small_output(int size = 64, int slices = 8) {
    SynthOptions o;
    o.seed = 5;
    o.size = size;
    o.slices = slices;
    return o;
}

std::vector<std::vector<std::string>> read_csv_rows(const fs::path& file) {
    std::vector<std::vector<std::string>> rows;
    std::istringstream in(read_file(file));
    std::string line;
    while (std::getline(in, line)) rows.push_back(split(line, ','));
    return rows;
}

// The value of one tag in dcmdump's output: "(0028,1052) DS [-1024]  # ..." -> "-1024".
std::string dcmdump_value(const std::string& dump, const std::string& tag) {
    const std::regex re("\\(" + tag + "\\) [A-Z]{2} \\[([^\\]]*)\\]");
    std::smatch m;
    if (std::regex_search(dump, m, re)) return m[1];
    const std::regex us("\\(" + tag + "\\) US ([0-9]+)");
    if (std::regex_search(dump, m, us)) return m[1];
    return "<missing " + tag + ">";
}

std::map<std::string, std::string> tree_bytes(const fs::path& root) {
    std::map<std::string, std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(root)) {
        if (e.is_regular_file()) files[fs::relative(e.path(), root).generic_string()] = read_file(e.path());
    }
    return files;
}

}  // namespace

TEST(SynthOutput, DicomReadsBackWithTheSameHuAndGeometry) {
    test::TempDir tmp;
    SynthOptions o = small_output(64, 8);
    o.force_subtypes = 1 << (kLabelIntraparenchymal - 1);
    const SynthStudy st = generate_study(o, 1);
    write_study_dicom(st, tmp / "s");
    const std::vector<Volume> vols = read_dicom_series({tmp / "s"});
    ASSERT_EQ(vols.size(), 1u);
    const Volume& v = vols[0];
    ASSERT_EQ(v.depth(), 8);
    EXPECT_TRUE(v.warnings.empty());
    for (int k = 0; k < 8; ++k) {
        EXPECT_EQ(cv::norm(v.slices[k], st.ct.slices[k], cv::NORM_INF), 0.0) << "slice " << k;
        EXPECT_EQ(v.slice_meta[k].sop_uid, st.sop_uids[k]);
        EXPECT_EQ(v.slice_meta[k].instance_number, st.instance_numbers[k]);
        EXPECT_TRUE(v.slice_meta[k].is_hu);
    }
    for (int a = 0; a < 3; ++a) {
        EXPECT_NEAR(v.geometry.spacing[a], st.ct.geometry.spacing[a], 1e-9);
        EXPECT_NEAR(v.geometry.origin[a], st.ct.geometry.origin[a], 1e-9);
    }
    for (int i = 0; i < 9; ++i) EXPECT_NEAR(v.geometry.direction[i], st.ct.geometry.direction[i], 1e-12);
    EXPECT_EQ(v.slice_meta[0].study_uid, st.study_uid);
    EXPECT_EQ(v.slice_meta[0].series_uid, st.series_uid);
    EXPECT_EQ(v.slice_meta[0].patient_id, st.patient_id);
}

TEST(SynthOutput, DcmdumpSeesTheTags) {
    if (test::run_command("command -v dcmdump").exit_code != 0) GTEST_SKIP() << "dcmdump not installed";
    test::TempDir tmp;
    const SynthStudy st = generate_study(small_output(48, 4), 0);
    write_study_dicom(st, tmp / "s");
    const int k = 2;
    const fs::path file = tmp / "s" / ("IM" + std::string(4 - std::to_string(st.instance_numbers[k]).size(), '0') +
                                       std::to_string(st.instance_numbers[k]) + ".dcm");
    ASSERT_TRUE(fs::exists(file));
    const auto r = test::run_command("dcmdump -Un '" + file.string() + "'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string& d = r.output;
    EXPECT_EQ(dcmdump_value(d, "0008,0016"), "1.2.840.10008.5.1.4.1.1.2");  // CT Image Storage
    EXPECT_EQ(dcmdump_value(d, "0008,0060"), "CT");
    EXPECT_EQ(dcmdump_value(d, "0028,1052"), "-1024");
    EXPECT_EQ(dcmdump_value(d, "0028,1053"), "1");
    EXPECT_EQ(dcmdump_value(d, "0028,0100"), "16");
    EXPECT_EQ(dcmdump_value(d, "0028,1050"), "40");
    EXPECT_EQ(dcmdump_value(d, "0028,1051"), "80");
    EXPECT_EQ(dcmdump_value(d, "0020,000d"), st.study_uid);
    EXPECT_EQ(dcmdump_value(d, "0020,000e"), st.series_uid);
    EXPECT_EQ(dcmdump_value(d, "0020,0052"), st.frame_uid);  // FrameOfReferenceUID, the same on every slice
    EXPECT_EQ(dcmdump_value(d, "0008,0018"), st.sop_uids[k]);
    EXPECT_EQ(dcmdump_value(d, "0010,0020"), st.patient_id);
    EXPECT_EQ(dcmdump_value(d, "0020,0013"), std::to_string(st.instance_numbers[k]));
    EXPECT_EQ(dcmdump_value(d, "0020,0037"), "1\\0\\0\\0\\1\\0");
    const auto& g = st.ct.geometry;
    const auto spacing = split(dcmdump_value(d, "0028,0030"), '\\');
    ASSERT_EQ(spacing.size(), 2u);
    EXPECT_DOUBLE_EQ(std::stod(spacing[0]), g.spacing[1]);
    EXPECT_DOUBLE_EQ(std::stod(spacing[1]), g.spacing[0]);
    EXPECT_DOUBLE_EQ(std::stod(dcmdump_value(d, "0018,0050")), g.spacing[2]);
    const auto pos = split(dcmdump_value(d, "0020,0032"), '\\');
    ASSERT_EQ(pos.size(), 3u);
    EXPECT_DOUBLE_EQ(std::stod(pos[0]), g.origin[0]);
    EXPECT_DOUBLE_EQ(std::stod(pos[1]), g.origin[1]);
    EXPECT_DOUBLE_EQ(std::stod(pos[2]), g.origin[2] + k * g.spacing[2]);
}

TEST(SynthOutput, ShuffledInstanceNumbersStillSortByPosition) {
    test::TempDir tmp;
    SynthOptions o = small_output(48, 10);
    int index = -1;
    SynthStudy st;
    for (int i = 0; i < 40 && index < 0; ++i) {
        st = generate_study(o, i);
        if (st.params.instance_order == "shuffled" &&
            !std::is_sorted(st.instance_numbers.begin(), st.instance_numbers.end())) {
            index = i;
        }
    }
    ASSERT_GE(index, 0) << "no shuffled study found";
    write_study_dicom(st, tmp / "s");
    const std::vector<Volume> vols = read_dicom_series({tmp / "s"});
    ASSERT_EQ(vols.size(), 1u);
    const Volume& v = vols[0];
    ASSERT_EQ(v.depth(), 10);
    std::vector<int> read_numbers;
    for (int k = 0; k < 10; ++k) {
        EXPECT_EQ(cv::norm(v.slices[k], st.ct.slices[k], cv::NORM_INF), 0.0) << "slice " << k;
        EXPECT_DOUBLE_EQ(v.slice_meta[k].position[2], st.ct.geometry.origin[2] + k * st.ct.geometry.spacing[2]);
        read_numbers.push_back(v.slice_meta[k].instance_number);
    }
    EXPECT_EQ(read_numbers, st.instance_numbers);
    EXPECT_FALSE(std::is_sorted(read_numbers.begin(), read_numbers.end()));
}

TEST(SynthOutput, NiftiImageAndLabelsRoundTrip) {
    test::TempDir tmp;
    SynthOptions o = small_output(64, 8);
    o.force_subtypes = 0b11111;
    o.force_calcification = 1;
    const SynthStudy st = generate_study(o, 0);
    write_study_nifti(st, tmp / "ct.nii.gz", tmp / "ct_labels.nii.gz");
    const Volume v = read_nifti(tmp / "ct.nii.gz");
    const LabelVolume l = read_nifti_labels(tmp / "ct_labels.nii.gz");
    ASSERT_EQ(v.depth(), 8);
    ASSERT_EQ(l.depth(), 8);
    std::set<int> values;
    for (int k = 0; k < 8; ++k) {
        EXPECT_EQ(cv::norm(v.slices[k], st.ct.slices[k], cv::NORM_INF), 0.0);
        EXPECT_EQ(cv::norm(l.slices[k], st.labels[k], cv::NORM_INF), 0.0);
        for (int r = 0; r < l.slices[k].rows; ++r) {
            for (int c = 0; c < l.slices[k].cols; ++c) values.insert(l.slices[k].at<uchar>(r, c));
        }
    }
    EXPECT_GE(*values.begin(), 0);
    EXPECT_LE(*values.rbegin(), 6);
    EXPECT_GE(values.size(), 3u);  // background and at least two labels
    for (int a = 0; a < 3; ++a) {
        EXPECT_EQ(v.geometry.spacing[a], st.ct.geometry.spacing[a]);  // exact: float-representable by design
        EXPECT_EQ(v.geometry.origin[a], st.ct.geometry.origin[a]);
        EXPECT_EQ(l.geometry.origin[a], st.ct.geometry.origin[a]);
    }
    for (int i = 0; i < 9; ++i) EXPECT_EQ(v.geometry.direction[i], st.ct.geometry.direction[i]);
    EXPECT_TRUE(v.slice_meta[0].is_hu);
}

TEST(SynthOutput, CohortManifestAndStudyTableAgreeWithTheMasks) {
    test::TempDir tmp;
    SynthOptions o = small_output(64, 8);
    o.studies = 6;
    o.p_bleed = 0.7;
    const CohortSummary s = write_cohort(o, tmp.path(), kSynthDicom | kSynthNifti | kSynthPng);
    EXPECT_EQ(s.studies, 6);
    EXPECT_EQ(s.slices, 48);

    const auto manifest = read_csv_rows(tmp / "manifest.csv");
    ASSERT_EQ(manifest.size(), 49u);
    const std::vector<std::string> header{"path",     "patient",          "study",
                                          "slice",    "any",              "epidural",
                                          "intraparenchymal", "intraventricular", "subarachnoid",
                                          "subdural", "mask"};
    EXPECT_EQ(manifest[0], header);
    std::map<std::string, std::array<int, 6>> per_patient;  // any + 5 subtypes, OR over slices
    std::map<std::string, int> slices_seen;
    for (size_t r = 1; r < manifest.size(); ++r) {
        const auto& row = manifest[r];
        ASSERT_EQ(row.size(), header.size());
        // study: the study folder; slice: its order in the study (the rows of a study in that order).
        EXPECT_EQ(row[0].rfind("png/" + row[2] + "/", 0), 0u) << row[0];
        EXPECT_EQ(row[3], std::to_string(slices_seen[row[2]]++)) << row[0];
        const cv::Mat png = cv::imread((tmp / row[0]).string(), cv::IMREAD_UNCHANGED);
        ASSERT_FALSE(png.empty()) << row[0];
        EXPECT_EQ(png.type(), CV_8UC1);
        EXPECT_EQ(png.rows, 64);
        const cv::Mat mask = cv::imread((tmp / row[10]).string(), cv::IMREAD_UNCHANGED);
        ASSERT_FALSE(mask.empty()) << row[10];
        bool any = false;
        for (int s2 = 0; s2 < kSynthSubtypes; ++s2) {
            const bool present = cv::countNonZero(mask == s2 + 1) > 0;
            EXPECT_EQ(row[5 + s2], present ? "1" : "0") << row[0] << " " << header[5 + s2];
            any = any || present;
            per_patient[row[1]][1 + s2] |= present;
        }
        EXPECT_EQ(row[4], any ? "1" : "0") << row[0];  // calcification (6) is not a hemorrhage
        per_patient[row[1]][0] |= any;
    }

    const auto studies = read_csv_rows(tmp / "studies.csv");
    ASSERT_EQ(studies.size(), 7u);
    EXPECT_EQ(studies[0][0], "study");
    EXPECT_EQ(studies[0][3], "any");
    EXPECT_EQ(studies[0][9], "calcification");
    EXPECT_EQ(studies[0][10], "epidural_ml");
    int with_bleed = 0;
    for (size_t r = 1; r < studies.size(); ++r) {
        const auto& row = studies[r];
        const auto& flags = per_patient.at(row[1]);
        for (int c = 0; c < 6; ++c) EXPECT_EQ(row[3 + c], flags[c] ? "1" : "0") << row[0] << " col " << c;
        // Volumes: positive exactly for the subtypes present; they equal the label map's voxel counts.
        const LabelVolume l = read_nifti_labels(tmp / "nifti" / (row[0] + "_labels.nii.gz"));
        const double voxel_ml = l.geometry.spacing[0] * l.geometry.spacing[1] * l.geometry.spacing[2] / 1000.0;
        for (int s2 = 0; s2 < kSynthSubtypes; ++s2) {
            int count = 0;
            for (const cv::Mat& m : l.slices) count += cv::countNonZero(m == s2 + 1);
            EXPECT_NEAR(std::stod(row[10 + s2]), count * voxel_ml, 0.0006);
            EXPECT_EQ(std::stod(row[10 + s2]) > 0, flags[1 + s2] == 1);
        }
        with_bleed += flags[0];
        // Every study has its DICOM series and NIfTI files.
        EXPECT_TRUE(fs::exists(tmp / "dicom" / row[0] / "IM0001.dcm"));
        EXPECT_TRUE(fs::exists(tmp / "nifti" / (row[0] + ".nii.gz")));
    }
    EXPECT_EQ(with_bleed, s.with_bleed);
}

TEST(SynthOutput, DicomOnlyManifestPointsAtTheDicomFiles) {
    test::TempDir tmp;
    SynthOptions o = small_output(32, 3);
    o.studies = 2;
    write_cohort(o, tmp.path(), kSynthDicom);
    const auto manifest = read_csv_rows(tmp / "manifest.csv");
    ASSERT_EQ(manifest.size(), 7u);
    EXPECT_EQ(manifest[0].size(), 10u);  // no mask column
    for (size_t r = 1; r < manifest.size(); ++r) EXPECT_TRUE(fs::exists(tmp / manifest[r][0])) << manifest[r][0];
    EXPECT_FALSE(fs::exists(tmp / "png"));

    test::TempDir only_nifti;
    write_cohort(o, only_nifti.path(), kSynthNifti);
    EXPECT_FALSE(fs::exists(only_nifti / "manifest.csv"));
    EXPECT_TRUE(fs::exists(only_nifti / "studies.csv"));
}

TEST(SynthOutput, SameSeedGivesTheSameBytesWhateverTheThreads) {
    test::TempDir a, b, c;
    SynthOptions o = small_output(48, 5);
    o.studies = 4;
    o.threads = 1;
    write_cohort(o, a.path(), 7);
    o.threads = 2;
    write_cohort(o, b.path(), 7);
    const auto fa = tree_bytes(a.path()), fb = tree_bytes(b.path());
    ASSERT_EQ(fa.size(), fb.size());
    EXPECT_GT(fa.size(), 4u * (5 + 5 + 5 + 2));
    for (const auto& [name, bytes] : fa) {
        ASSERT_TRUE(fb.count(name)) << name;
        EXPECT_TRUE(bytes == fb.at(name)) << name << " differs";
    }
    o.seed = 6;
    write_cohort(o, c.path(), 7);
    EXPECT_NE(read_file(a / "studies.csv"), read_file(c / "studies.csv"));
}

TEST(SynthOutput, RgbPngsHoldThreeWindows) {
    test::TempDir tmp;
    SynthOptions o = small_output(48, 2);
    o.studies = 1;
    o.png_rgb = true;
    write_cohort(o, tmp.path(), kSynthPng);
    const cv::Mat png = cv::imread((tmp / "png" / "study_0000" / "slice_001.png").string(), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(png.type(), CV_8UC3);
    const SynthStudy st = generate_study(o, 0);
    EXPECT_EQ(cv::norm(png, synth_png(st.ct.slices[0], true), cv::NORM_INF), 0.0);
    // Brain window in the red channel (OpenCV stores BGR: red is channel 2).
    std::vector<cv::Mat> ch;
    cv::split(png, ch);
    EXPECT_EQ(cv::norm(ch[2], synth_png(st.ct.slices[0], false), cv::NORM_INF), 0.0);
}

TEST(SynthOutput, ExampleGridHasEveryPanel) {
    const cv::Mat grid = synth_example_grid(3, 96);
    ASSERT_EQ(grid.type(), CV_8UC3);
    EXPECT_EQ(grid.cols, 4 * 96);
    EXPECT_EQ(grid.rows, 2 * 96);
    for (int p = 0; p < 8; ++p) {
        const cv::Mat tile = grid(cv::Rect((p % 4) * 96, (p / 4) * 96, 96, 96));
        EXPECT_GT(cv::mean(tile)[0], 5.0) << "empty panel " << p;
    }
}

TEST(SynthOutput, CommandLine) {
    if (!fs::exists(HEMOSCAN_BIN)) GTEST_SKIP() << "hemoscan binary not built";
    test::TempDir tmp;
    auto r = test::run_hemoscan("synth --out '" + (tmp / "c").string() +
                                "' --studies 2 --seed 3 --size 48 --slices 3 --format png,nifti");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(tmp / "c" / "manifest.csv"));
    EXPECT_TRUE(fs::exists(tmp / "c" / "nifti" / "study_0001_labels.nii.gz"));
    EXPECT_FALSE(fs::exists(tmp / "c" / "dicom"));
    r = test::run_hemoscan("synth --out '" + (tmp / "d").string() + "' --studies 1 --format jpeg");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("jpeg"), std::string::npos) << r.output;
    r = test::run_hemoscan("synth --out '" + (tmp / "d").string() + "' --size 8");
    EXPECT_EQ(r.exit_code, 2) << r.output;
}

// DICOM series: grouping, ordering along the slice normal, spacing, gaps, duplicates, errors.
#include <gtest/gtest.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/log_capture.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using test::kPi;

namespace {


struct SeriesSpec {
    std::string series_uid;
    int count = 8;
    double step = 5.0;
    std::array<double, 3> origin{-100, -120, 30};
    std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};
    double in_plane_shift = 0;  // mm along the column direction per slice (changes z, not the order)
    std::vector<int> skip;      // slice indices not written (missing slices)
    std::vector<int> duplicate; // slice indices written twice
    int rows = 6, cols = 7;
    std::string prefix = "img";
    unsigned seed = 1;
    int series_number = 1;
};

// Identifiers written into every file, which no message may carry.
const std::string kPatientId = "PID-4711";
const std::string kPatientName = "Doe^Jane";
const std::string kStudyUid = "1.2.826.0.1.3680043.2.1125.77";

std::array<double, 3> normal_of(const std::array<double, 6>& o) {
    return {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
}

std::array<double, 3> position_of(const SeriesSpec& spec, int i) {
    const auto n = normal_of(spec.orientation);
    std::array<double, 3> p{};
    for (int k = 0; k < 3; ++k) {
        p[k] = spec.origin[k] + i * spec.step * n[k] + i * spec.in_plane_shift * spec.orientation[3 + k];
    }
    return p;
}

// Slice i holds the constant 10 * i HU, so the order can be read back from the pixels. Instance
// numbers and file names are shuffled (seeded) so that neither matches the spatial order.
std::vector<fs::path> write_series(const fs::path& dir, const SeriesSpec& spec) {
    std::vector<int> indices;
    for (int i = 0; i < spec.count; ++i) {
        if (std::find(spec.skip.begin(), spec.skip.end(), i) != spec.skip.end()) continue;
        indices.push_back(i);
        if (std::find(spec.duplicate.begin(), spec.duplicate.end(), i) != spec.duplicate.end()) indices.push_back(i);
    }
    std::mt19937 rng(spec.seed);
    std::vector<int> instance(indices.size()), file_no(indices.size());
    std::iota(instance.begin(), instance.end(), 1);
    std::iota(file_no.begin(), file_no.end(), 100);
    std::shuffle(instance.begin(), instance.end(), rng);
    std::shuffle(file_no.begin(), file_no.end(), rng);

    DicomWriteOptions o;
    o.study_uid = kStudyUid;
    o.patient_id = kPatientId;
    o.patient_name = kPatientName;
    o.series_uid = spec.series_uid;
    o.series_number = spec.series_number;
    o.orientation = spec.orientation;
    o.pixel_spacing = {0.6, 0.4};
    o.slice_thickness = spec.step;
    std::vector<fs::path> paths;
    for (size_t k = 0; k < indices.size(); ++k) {
        const int i = indices[k];
        o.instance_number = instance[k];
        o.position = position_of(spec, i);
        const fs::path path = dir / (spec.prefix + std::to_string(file_no[k]) + ".dcm");
        write_dicom_ct(path, cv::Mat(spec.rows, spec.cols, CV_32F, cv::Scalar(10.0 * i)), o);
        paths.push_back(path);
    }
    return paths;
}

bool contains(const std::vector<std::string>& lines, const std::string& part) {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.find(part) != std::string::npos; });
}

void expect_slice_values(const Volume& v, const std::vector<int>& indices) {
    ASSERT_EQ(v.depth(), static_cast<int>(indices.size()));
    for (int k = 0; k < v.depth(); ++k) {
        EXPECT_EQ(v.slices[static_cast<size_t>(k)].at<float>(0, 0), 10.0f * indices[static_cast<size_t>(k)])
            << "slice " << k;
    }
}

}  // namespace

TEST(DicomSeries, ShuffledAxialSeriesIsOrderedByPosition) {
    test::TempDir dir;
    SeriesSpec spec;
    spec.series_uid = "1.2.3.100";
    write_series(dir.path(), spec);

    const auto volumes = read_dicom_series({dir.path()});
    ASSERT_EQ(volumes.size(), 1u);
    const Volume& v = volumes.front();
    expect_slice_values(v, {0, 1, 2, 3, 4, 5, 6, 7});
    EXPECT_TRUE(v.warnings.empty());
    EXPECT_EQ(v.rows(), 6);
    EXPECT_EQ(v.cols(), 7);
    EXPECT_NEAR(v.geometry.spacing[0], 0.4, 1e-9);  // along a row = column spacing
    EXPECT_NEAR(v.geometry.spacing[1], 0.6, 1e-9);
    EXPECT_NEAR(v.geometry.spacing[2], 5.0, 1e-9);
    EXPECT_NEAR(v.geometry.origin[0], -100, 1e-9);
    EXPECT_NEAR(v.geometry.origin[1], -120, 1e-9);
    EXPECT_NEAR(v.geometry.origin[2], 30, 1e-9);
    const std::array<double, 9> identity{1, 0, 0, 0, 1, 0, 0, 0, 1};
    for (int k = 0; k < 9; ++k) EXPECT_NEAR(v.geometry.direction[k], identity[k], 1e-12) << k;
    ASSERT_EQ(v.slice_meta.size(), 8u);
    // Instance numbers were shuffled: the order must not follow them.
    std::vector<int> instances;
    for (const auto& m : v.slice_meta) instances.push_back(m.instance_number);
    EXPECT_FALSE(std::is_sorted(instances.begin(), instances.end()));
    for (const auto& m : v.slice_meta) EXPECT_EQ(m.series_uid, "1.2.3.100");
}

TEST(DicomSeries, TiltedSeriesIsOrderedAlongTheNormal) {
    test::TempDir dir;
    SeriesSpec spec;
    spec.series_uid = "1.2.3.101";
    const double a = 20.0 * kPi / 180.0;
    spec.orientation = {1, 0, 0, 0, std::cos(a), std::sin(a)};  // rotated about x by 20 degrees
    spec.step = 2.5;
    // Shifting each slice 20 mm down the columns makes z *decrease* along the normal: ordering by
    // z alone would reverse the stack.
    spec.in_plane_shift = -20;
    write_series(dir.path(), spec);
    ASSERT_GT(position_of(spec, 0)[2], position_of(spec, 7)[2]);

    const auto volumes = read_dicom_series({dir.path()});
    ASSERT_EQ(volumes.size(), 1u);
    const Volume& v = volumes.front();
    expect_slice_values(v, {0, 1, 2, 3, 4, 5, 6, 7});
    EXPECT_TRUE(v.warnings.empty());
    EXPECT_NEAR(v.geometry.spacing[2], 2.5, 1e-6);
    const auto origin = position_of(spec, 0);
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(v.geometry.origin[k], origin[k], 1e-6);
    const std::array<double, 9> direction{1, 0, 0, 0, std::cos(a), std::sin(a), 0, -std::sin(a), std::cos(a)};
    for (int k = 0; k < 9; ++k) EXPECT_NEAR(v.geometry.direction[k], direction[k], 1e-9) << k;
}

TEST(DicomSeries, MissingSliceIsReported) {
    test::TempDir dir;
    SeriesSpec spec;
    spec.series_uid = "1.2.3.102";
    spec.skip = {4};
    write_series(dir.path(), spec);

    const auto volumes = read_dicom_series({dir.path()});
    ASSERT_EQ(volumes.size(), 1u);
    const Volume& v = volumes.front();
    expect_slice_values(v, {0, 1, 2, 3, 5, 6, 7});
    EXPECT_NEAR(v.geometry.spacing[2], 5.0, 1e-9);  // median step, not the gap
    ASSERT_EQ(v.warnings.size(), 1u);
    EXPECT_TRUE(contains(v.warnings, "missing")) << v.warnings.front();
    EXPECT_TRUE(contains(v.warnings, "gap of 10 mm")) << v.warnings.front();
    EXPECT_TRUE(contains(v.warnings, "about 1 slice(s) missing")) << v.warnings.front();
}

TEST(DicomSeries, DuplicatePositionIsReportedAndDropped) {
    test::TempDir dir;
    SeriesSpec spec;
    spec.series_uid = "1.2.3.103";
    spec.duplicate = {3};
    write_series(dir.path(), spec);

    const auto volumes = read_dicom_series({dir.path()});
    ASSERT_EQ(volumes.size(), 1u);
    const Volume& v = volumes.front();
    expect_slice_values(v, {0, 1, 2, 3, 4, 5, 6, 7});
    EXPECT_NEAR(v.geometry.spacing[2], 5.0, 1e-9);
    ASSERT_EQ(v.warnings.size(), 1u);
    EXPECT_TRUE(contains(v.warnings, "duplicate")) << v.warnings.front();
}

TEST(DicomSeries, TwoSeriesInOneFolderAreSeparatedLargestFirst) {
    test::TempDir dir;
    SeriesSpec small;
    small.series_uid = "1.2.3.200";
    small.count = 5;
    small.step = 1.25;
    small.prefix = "a";
    small.seed = 3;
    SeriesSpec big;
    big.series_uid = "1.2.3.201";
    big.prefix = "b";
    big.seed = 4;
    write_series(dir / "nested" / "deeper", small);  // found recursively
    write_series(dir.path(), big);
    // Non-DICOM files in the folder are skipped silently.
    test::write_text(dir / "readme.txt", "not an image");
    write_image_2d(dir / "nested" / "preview.png", cv::Mat(4, 4, CV_8U, cv::Scalar(9)));

    const auto volumes = read_dicom_series({dir.path()});
    ASSERT_EQ(volumes.size(), 2u);
    EXPECT_EQ(volumes[0].slice_meta.front().series_uid, "1.2.3.201");
    EXPECT_EQ(volumes[1].slice_meta.front().series_uid, "1.2.3.200");
    expect_slice_values(volumes[0], {0, 1, 2, 3, 4, 5, 6, 7});
    expect_slice_values(volumes[1], {0, 1, 2, 3, 4});
    EXPECT_NEAR(volumes[0].geometry.spacing[2], 5.0, 1e-9);
    EXPECT_NEAR(volumes[1].geometry.spacing[2], 1.25, 1e-9);
    for (const auto& v : volumes) {
        EXPECT_TRUE(v.warnings.empty());
        for (const auto& m : v.slice_meta) EXPECT_EQ(m.series_uid, v.slice_meta.front().series_uid);
    }
}

TEST(DicomSeries, FileListGivesTheSameResultAsTheFolder) {
    test::TempDir dir;
    SeriesSpec spec;
    spec.series_uid = "1.2.3.104";
    std::vector<fs::path> files = write_series(dir.path(), spec);
    std::reverse(files.begin(), files.end());
    const auto volumes = read_dicom_series(files);
    ASSERT_EQ(volumes.size(), 1u);
    expect_slice_values(volumes.front(), {0, 1, 2, 3, 4, 5, 6, 7});
    // Naming the same files again (and their folder) does not duplicate them.
    files.push_back(dir.path());
    const auto again = read_dicom_series(files);
    ASSERT_EQ(again.size(), 1u);
    EXPECT_EQ(again.front().depth(), 8);
    EXPECT_TRUE(again.front().warnings.empty());
}

TEST(DicomSeries, SlicesOfDifferentSizeAreAnError) {
    test::TempDir dir;
    SeriesSpec spec;
    spec.series_uid = "1.2.3.105";
    spec.count = 3;
    write_series(dir.path(), spec);
    DicomWriteOptions o;
    o.series_uid = spec.series_uid;
    o.position = position_of(spec, 3);
    write_dicom_ct(dir / "odd.dcm", cv::Mat(5, 5, CV_32F, cv::Scalar(0)), o);
    try {
        read_dicom_series({dir.path()});
        FAIL() << "no InputError";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("odd.dcm"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("differs"), std::string::npos) << e.what();
    }
}

TEST(DicomSeries, FolderWithoutDicomIsAnErrorNamingIt) {
    test::TempDir dir;
    const fs::path folder = dir / "photos";
    test::write_text(folder / "a.txt", "hello");
    write_image_2d(folder / "b.png", cv::Mat(3, 3, CV_8U, cv::Scalar(1)));
    try {
        read_dicom_series({folder});
        FAIL() << "no InputError";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(folder.string()), std::string::npos) << e.what();
    }
    EXPECT_THROW(read_dicom_series({dir / "does_not_exist"}), InputError);
}

TEST(DicomSeries, ModalityPolicyAppliesToSeries) {
    test::TempDir dir;
    DicomWriteOptions o;
    o.modality = "MR";
    o.series_uid = "1.2.3.106";
    for (int i = 0; i < 3; ++i) {
        o.position = {0, 0, 2.0 * i};
        write_dicom_ct(dir / ("mr" + std::to_string(i) + ".dcm"), cv::Mat(4, 4, CV_32F, cv::Scalar(100)), o);
    }
    try {
        read_dicom_series({dir.path()});
        FAIL() << "no InputError";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("modality MR where CT is expected"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
    }
    const auto volumes = read_dicom_series({dir.path()}, ModalityPolicy::CtOrMr);
    ASSERT_EQ(volumes.size(), 1u);
    EXPECT_EQ(volumes.front().depth(), 3);
    EXPECT_NEAR(volumes.front().geometry.spacing[2], 2.0, 1e-9);
}

TEST(DicomSeries, NonImageDicomInAFolderIsSkippedButNamedFileIsAnError) {
    test::TempDir dir;
    SeriesSpec spec;
    spec.series_uid = "1.2.3.107";
    spec.count = 2;
    write_series(dir.path(), spec);
    // A DICOM file without pixel data (like a DICOMDIR or a report) next to the images.
    {
        DcmFileFormat file;
        file.getDataset()->putAndInsertString(DCM_SOPClassUID, UID_BasicTextSRStorage);
        file.getDataset()->putAndInsertString(DCM_SOPInstanceUID, new_dicom_uid().c_str());
        file.getDataset()->putAndInsertString(DCM_Modality, "SR");
        ASSERT_TRUE(file.saveFile((dir / "DICOMDIR").string().c_str(), EXS_LittleEndianExplicit).good());
    }
    ASSERT_TRUE(is_dicom_file(dir / "DICOMDIR"));
    const auto volumes = read_dicom_series({dir.path()});
    ASSERT_EQ(volumes.size(), 1u);
    EXPECT_EQ(volumes.front().depth(), 2);
    EXPECT_THROW(read_dicom_series({dir / "DICOMDIR"}), InputError);
}

TEST(DicomSeries, SingleSliceUsesSliceThickness) {
    test::TempDir dir;
    DicomWriteOptions o;
    o.slice_thickness = 3.0;
    write_dicom_ct(dir / "one.dcm", cv::Mat(2, 2, CV_32F, cv::Scalar(5)), o);
    const auto volumes = read_dicom_series({dir / "one.dcm"});
    ASSERT_EQ(volumes.size(), 1u);
    EXPECT_EQ(volumes.front().depth(), 1);
    EXPECT_DOUBLE_EQ(volumes.front().geometry.spacing[2], 3.0);
}

namespace {

// Rewrites one tag of a written file (kDelete: removes it).
const std::string kDelete = "<delete>";
void edit_tag(const fs::path& path, const DcmTagKey& tag, const std::string& value) {
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(path.string().c_str()).good()) << path;
    DcmDataset& ds = *file.getDataset();
    if (value == kDelete) {
        ASSERT_TRUE(ds.findAndDeleteElement(tag).good()) << path;
    } else {
        ASSERT_TRUE(ds.putAndInsertString(tag, value.c_str()).good()) << path;
    }
    ASSERT_TRUE(file.saveFile(path.string().c_str(), EXS_LittleEndianExplicit).good()) << path;
}

// `text` holds no UID, patient identifier or absolute path (issue 28, item 5).
void expect_no_identifiers(const std::string& text, const std::vector<std::string>& uids, const fs::path& root) {
    for (const std::string& id : uids) EXPECT_EQ(text.find(id), std::string::npos) << id << " in:\n" << text;
    for (const std::string& id : {kPatientId, kPatientName, kStudyUid, root.string(), std::string(SITE_UID_ROOT)}) {
        EXPECT_EQ(text.find(id), std::string::npos) << id << " in:\n" << text;
    }
}

std::string joined(const std::vector<Volume>& volumes) {
    std::string all;
    for (const Volume& v : volumes) {
        for (const std::string& w : v.warnings) all += w + "\n";
    }
    return all;
}

}  // namespace

// Issue 28 (item 5): warnings and log lines carried SeriesInstanceUIDs and absolute paths ("series
// 1.2.3.103: duplicate slice at position 45 mm: kept /tmp/.../img104.dcm, dropped /tmp/.../img101.dcm").
// A series is now named by its number among those read, its SeriesNumber and size; a slice by its path
// relative to the folder given and its InstanceNumber.
TEST(DicomSeries, WarningsNameSeriesAndSlicesWithoutIdentifiers) {
    test::TempDir dir;
    const fs::path root = dir / "study";
    const std::vector<std::string> uids = {"1.2.3.301", "1.2.3.302", "1.2.3.303", "1.2.3.304"};
    SeriesSpec gappy;  // a gap and a duplicate, in a subfolder: series 1 of 4 (7 slices)
    gappy.series_uid = uids[0];
    gappy.series_number = 3;
    gappy.skip = {4};
    gappy.duplicate = {2};
    write_series(root / "sub" / "a", gappy);
    SeriesSpec unplaced;  // a slice without ImagePositionPatient: series 2 of 4
    unplaced.series_uid = uids[1];
    unplaced.series_number = 7;
    unplaced.count = 5;
    unplaced.prefix = "u";
    const std::vector<fs::path> unplaced_files = write_series(root / "b", unplaced);
    edit_tag(unplaced_files[2], DCM_ImagePositionPatient, kDelete);
    SeriesSpec turned;  // a slice with another orientation: series 3 of 4
    turned.series_uid = uids[2];
    turned.series_number = 9;
    turned.count = 4;
    turned.prefix = "t";
    const std::vector<fs::path> turned_files = write_series(root / "c", turned);
    edit_tag(turned_files[1], DCM_ImageOrientationPatient, "1\\0\\0\\0\\0.8\\0.6");
    SeriesSpec broken;  // no valid orientation at all, and no SeriesNumber: series 4 of 4
    broken.series_uid = uids[3];
    broken.count = 2;
    broken.prefix = "z";
    for (const fs::path& f : write_series(root / "d", broken)) {
        edit_tag(f, DCM_ImageOrientationPatient, "0\\0\\0\\0\\0\\0");
        edit_tag(f, DCM_SeriesNumber, kDelete);
    }
    test::write_text(root / "sub" / "notes.txt", "not an image");

    test::LogCapture log;
    const auto volumes = read_dicom_series({root});
    const std::string logged = log.text();
    ASSERT_EQ(volumes.size(), 4u);
    const std::string warnings = joined(volumes);
    expect_no_identifiers(warnings, uids, root);
    expect_no_identifiers(logged, uids, root);

    ASSERT_EQ(volumes[0].warnings.size(), 2u) << warnings;
    for (const std::string& w : volumes[0].warnings) {
        EXPECT_EQ(w.rfind("series 1 of 4 (SeriesNumber 3, 7 slices): ", 0), 0u) << w;
        EXPECT_NE(logged.find(w), std::string::npos) << w << " not logged:\n" << logged;
    }
    EXPECT_TRUE(contains(volumes[0].warnings, "duplicate slice at position")) << warnings;
    EXPECT_TRUE(contains(volumes[0].warnings, "kept sub/a/img1")) << warnings;
    EXPECT_TRUE(contains(volumes[0].warnings, "dropped sub/a/img1")) << warnings;
    EXPECT_TRUE(contains(volumes[0].warnings, "gap of 10 mm between sub/a/img1")) << warnings;
    EXPECT_TRUE(contains(volumes[0].warnings, "(InstanceNumber ")) << warnings;

    const std::string unplaced_name = "b/" + unplaced_files[2].filename().string();
    ASSERT_EQ(volumes[1].warnings.size(), 1u) << warnings;
    EXPECT_EQ(volumes[1].warnings[0].rfind("series 2 of 4 (SeriesNumber 7, 5 slices): ImagePositionPatient missing "
                                           "in 1 of 5 slices (e.g. " + unplaced_name + " (InstanceNumber ",
                                           0),
              0u)
        << volumes[1].warnings[0];

    const std::string turned_name = "c/" + turned_files[1].filename().string();
    ASSERT_EQ(volumes[2].warnings.size(), 1u) << warnings;
    EXPECT_EQ(volumes[2].warnings[0].rfind("series 3 of 4 (SeriesNumber 9, 4 slices): ", 0), 0u) << warnings;
    EXPECT_TRUE(contains(volumes[2].warnings, "has a different orientation than c/t1")) << warnings;
    EXPECT_TRUE(contains(volumes[2].warnings, turned_name)) << warnings;

    ASSERT_FALSE(volumes[3].warnings.empty()) << warnings;
    EXPECT_EQ(volumes[3].warnings[0].rfind("series 4 of 4 (no SeriesNumber, 2 slices): invalid "
                                           "ImageOrientationPatient in d/z1",
                                           0),
              0u)
        << warnings;

    // Debug lines name files relatively too (a skipped file, each slice read).
    EXPECT_NE(logged.find("sub/notes.txt: not DICOM, skipped"), std::string::npos) << logged;
    EXPECT_NE(logged.find(unplaced_name + ": CT"), std::string::npos) << logged;
    EXPECT_EQ(volumes[0].slice_meta.front().series_number, 3);
    EXPECT_FALSE(volumes[3].slice_meta.front().series_number.has_value());
}

// A file list (the server's staged upload, a zip's entries): warnings name the files by base name, or
// by the names the caller gives, which also name them in errors instead of their paths.
TEST(DicomSeries, FileListIsNamedByBaseNameOrByTheCallersNames) {
    test::TempDir dir;
    SeriesSpec spec;
    spec.series_uid = "1.2.3.310";
    spec.count = 4;
    spec.duplicate = {1};
    const std::vector<fs::path> files = write_series(dir / "staging", spec);

    test::LogCapture log;
    const auto plain = read_dicom_series(files);
    ASSERT_EQ(plain.size(), 1u);
    ASSERT_EQ(plain[0].warnings.size(), 1u);
    const std::string& w = plain[0].warnings[0];
    EXPECT_EQ(w.rfind("series 1 of 1 (SeriesNumber 1, 4 slices): duplicate slice at position", 0), 0u) << w;
    EXPECT_NE(w.find("kept img1"), std::string::npos) << w;
    expect_no_identifiers(w + log.text(), {spec.series_uid}, dir.path());

    std::vector<std::string> names;
    for (size_t i = 0; i < files.size(); ++i) names.push_back("upload/scan " + std::to_string(i) + ".dcm");
    const auto named = read_dicom_series(files, ModalityPolicy::CtOnly, names);
    ASSERT_EQ(named.size(), 1u);
    ASSERT_EQ(named[0].warnings.size(), 1u);
    EXPECT_NE(named[0].warnings[0].find("kept upload/scan "), std::string::npos) << named[0].warnings[0];
    EXPECT_NE(named[0].warnings[0].find("dropped upload/scan "), std::string::npos) << named[0].warnings[0];
    expect_no_identifiers(named[0].warnings[0] + log.text(), {spec.series_uid}, dir.path());
    EXPECT_EQ(named[0].slice_meta[0].path.find(dir.path().string()), 0u);  // the file it was read from

    test::write_text(dir / "staging" / "bad.dcm", std::string(128, '\0') + "DICM and then nothing");
    std::vector<fs::path> with_bad = files;
    with_bad.push_back(dir / "staging" / "bad.dcm");
    names.push_back("upload/bad.dcm");
    try {
        read_dicom_series(with_bad, ModalityPolicy::CtOnly, names);
        FAIL() << "no InputError";
    } catch (const InputError& e) {
        EXPECT_EQ(std::string(e.what()).rfind("upload/bad.dcm: ", 0), 0u) << e.what();
        expect_no_identifiers(e.what(), {spec.series_uid}, dir.path());
    }
    // Without names, the error names the file as the caller gave it (the CLI user must find it).
    test::expect_input_error([&] { read_dicom_series(with_bad); }, {(dir / "staging" / "bad.dcm").string()});
    EXPECT_THROW(read_dicom_series(files, ModalityPolicy::CtOnly, {"one name"}), UsageError);
}

// The size check names both files and the series by its SeriesNumber, not its UID.
TEST(DicomSeries, SizeMismatchErrorNamesNoUid) {
    test::TempDir dir;
    SeriesSpec spec;
    spec.series_uid = "1.2.3.311";
    spec.series_number = 4;
    spec.count = 2;
    write_series(dir.path(), spec);
    DicomWriteOptions o;
    o.series_uid = spec.series_uid;
    o.series_number = 4;
    o.position = position_of(spec, 3);
    write_dicom_ct(dir / "odd.dcm", cv::Mat(5, 5, CV_32F, cv::Scalar(0)), o);
    try {
        read_dicom_series({dir.path()});
        FAIL() << "no InputError";
    } catch (const InputError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("in the same series (SeriesNumber 4)"), std::string::npos) << what;
        EXPECT_EQ(what.find(spec.series_uid), std::string::npos) << what;
    }
}

// Black-box tests of `hemoscan deid`: a series folder de-identified reads back as the same volume,
// nothing identifying is left in the bytes, the key comes from a file or the environment, errors.
#include <gtest/gtest.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <sstream>
#include <string>
#include <vector>

#include "hemoscan/io/dicom.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

namespace fs = std::filesystem;

namespace {

using hemoscan::test::q;
using hemoscan::test::run_hemoscan;

const char* const kDeidCliKey = "cli test key: 7f3a9c0e51b2d8a4 (not a real secret)";

// A CT series of `count` slices (files named against position order) whose files are complete enough for
// dciodvfy (the Type 1 and 2 attributes of the CT Image IOD) and carry identifying attributes.
void deid_cli_series(const fs::path& dir, int count, const std::string& burned_in = "NO") {
    hemoscan::DicomWriteOptions o;
    o.patient_id = "MRN-7781";
    o.patient_name = "Roe^Jane";
    o.study_uid = hemoscan::new_dicom_uid();
    o.series_uid = hemoscan::new_dicom_uid();
    o.series_description = "HEAD Jane Roe";
    o.pixel_spacing = {0.6, 0.6};
    o.slice_thickness = 3;
    const std::string frame_uid = hemoscan::new_dicom_uid();
    for (int i = 0; i < count; ++i) {
        const int k = (i * 3) % count;  // file i holds position k: not the file order
        cv::Mat hu(12, 14, CV_32F, cv::Scalar(30.0 * k - 50));
        hu(cv::Rect(7, 0, 7, 12)).setTo(900);
        o.position = {-4.2, -3.6, 3.0 * k + 0.25};
        o.instance_number = k + 1;
        o.sop_uid = hemoscan::new_dicom_uid();
        const fs::path path = dir / ("img" + std::to_string(i) + ".dcm");
        hemoscan::write_dicom_ct(path, hu, o);

        DcmFileFormat file;
        ASSERT_TRUE(file.loadFile(path.string().c_str()).good());
        DcmDataset& ds = *file.getDataset();
        const std::pair<DcmTagKey, const char*> values[] = {
            {DCM_PatientBirthDate, "19610704"}, {DCM_PatientSex, "F"},
            {DCM_StudyDate, "20240229"},        {DCM_StudyTime, "083000"},
            {DCM_SeriesDate, "20240229"},       {DCM_ContentDate, "20240229"},
            {DCM_ContentTime, "083512"},        {DCM_ReferringPhysicianName, "Sender^Sam"},
            {DCM_StudyID, "ST777"},             {DCM_AccessionNumber, "ACC-998877"},
            {DCM_PatientPosition, "HFS"},       {DCM_Laterality, ""},
            {DCM_FrameOfReferenceUID, frame_uid.c_str()}, {DCM_PositionReferenceIndicator, ""},
            {DCM_Manufacturer, "ACME"},         {DCM_KVP, "120"},
            {DCM_AcquisitionNumber, "1"},       {DCM_InstitutionName, "St Elsewhere Hospital"},
            {DCM_OperatorsName, "Tech^Tom"},    {DCM_StationName, "ELSEWHERE-CT2"},
            {DCM_BurnedInAnnotation, burned_in.c_str()},
        };
        for (const auto& [tag, value] : values) ASSERT_TRUE(ds.putAndInsertString(tag, value).good());
        ASSERT_TRUE(ds.putAndInsertString(DcmTag(0x0019, 0x0010, EVR_LO), "ACME PRIVATE").good());
        ASSERT_TRUE(ds.putAndInsertString(DcmTag(0x0019, 0x1002, EVR_LO), "Roe Jane 1961").good());
        ASSERT_TRUE(file.saveFile(path.string().c_str(), EXS_LittleEndianExplicit).good());
    }
}

fs::path deid_cli_key_file(const fs::path& dir) {
    const fs::path key = dir / "deid.key";
    hemoscan::test::write_text(key, std::string(kDeidCliKey) + "\n");
    return key;
}

// The lines of dciodvfy's report that are errors; empty where dicom3tools is not installed.
std::vector<std::string> deid_cli_dciodvfy_errors(const fs::path& file) {
    const auto r = hemoscan::test::run_command("dciodvfy " + q(file));
    std::vector<std::string> errors;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("Error", 0) == 0) errors.push_back(line);
    }
    return errors;
}

bool deid_cli_have_dciodvfy() { return hemoscan::test::run_command("command -v dciodvfy").exit_code == 0; }

}  // namespace

TEST(DeidCli, SeriesFolderReadsBackAsTheSameVolumeWithNothingIdentifying) {
    hemoscan::test::TempDir d;
    deid_cli_series(d / "in", 5);
    hemoscan::test::write_text(d / "in" / "notes.txt", "Jane Roe, MRN-7781\n");
    const fs::path key = deid_cli_key_file(d.path());

    const auto r = run_hemoscan("deid " + q(d / "in") + " " + q(d / "out") + " --key-file " + q(key));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("de-identified 5 file(s)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("UIDs remapped"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("notes.txt: not DICOM, skipped"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "out" / "notes.txt"));

    const auto before = hemoscan::read_dicom_series({d / "in"});
    const auto after = hemoscan::read_dicom_series({d / "out"});
    ASSERT_EQ(before.size(), 1u);
    ASSERT_EQ(after.size(), 1u);
    ASSERT_EQ(after[0].depth(), 5);
    EXPECT_EQ(after[0].geometry.spacing, before[0].geometry.spacing);
    EXPECT_EQ(after[0].geometry.origin, before[0].geometry.origin);
    EXPECT_EQ(after[0].geometry.direction, before[0].geometry.direction);
    EXPECT_TRUE(after[0].warnings.empty());
    for (int i = 0; i < 5; ++i) hemoscan::test::expect_mat_exact(after[0].slices[i], before[0].slices[i]);
    const hemoscan::ImageMeta& meta = after[0].slice_meta[0];
    EXPECT_EQ(meta.patient_id.rfind("ANON", 0), 0u) << meta.patient_id;
    EXPECT_EQ(meta.series_uid.rfind("2.25.", 0), 0u) << meta.series_uid;
    EXPECT_NE(meta.series_uid, before[0].slice_meta[0].series_uid);

    for (int i = 0; i < 5; ++i) {
        const fs::path out = d / "out" / ("img" + std::to_string(i) + ".dcm");
        const std::string bytes = hemoscan::read_file(out);
        for (const char* leak : {"Roe", "Jane", "MRN-7781", "Elsewhere", "ELSEWHERE", "Tech^Tom", "ACC-998877",
                                 "19610704", "20240229", "ACME PRIVATE"}) {
            EXPECT_EQ(bytes.find(leak), std::string::npos) << out << ": " << leak;
        }
    }

    // Another run with the same key, on its own: the same bytes (a study de-identified in parts fits together).
    const auto again = run_hemoscan("deid " + q(d / "in") + " " + q(d / "again") + " --key-file " + q(key));
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(hemoscan::read_file(d / "again" / "img3.dcm"), hemoscan::read_file(d / "out" / "img3.dcm"));

    if (!deid_cli_have_dciodvfy()) {
        GTEST_SKIP() << "dciodvfy (dicom3tools) not installed: IOD check skipped";
    }
    // The input is a valid CT image; de-identification must not make it invalid.
    const auto input_errors = deid_cli_dciodvfy_errors(d / "in" / "img0.dcm");
    EXPECT_TRUE(input_errors.empty()) << "the fixture itself: " << input_errors.front();
    for (const auto& line : deid_cli_dciodvfy_errors(d / "out" / "img0.dcm")) ADD_FAILURE() << line;
}

TEST(DeidCli, KeyComesFromAFileOrTheEnvironmentNeverTheCommandLine) {
    hemoscan::test::TempDir d;
    deid_cli_series(d / "in", 2);
    const fs::path key = deid_cli_key_file(d.path());
    const std::string io = q(d / "in" / "img0.dcm") + " ";

    auto r = run_hemoscan("deid " + io + q(d / "a.dcm"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--key-file"), std::string::npos) << r.output;
    r = run_hemoscan("deid " + io + q(d / "a.dcm") + " --key " + q(kDeidCliKey));
    EXPECT_EQ(r.exit_code, 2) << r.output;  // no such option
    EXPECT_FALSE(fs::exists(d / "a.dcm"));

    r = run_hemoscan("deid " + io + q(d / "file.dcm") + " --key-file " + q(key));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = hemoscan::test::run_command("HEMOSCAN_TEST_DEID_KEY=" + q(kDeidCliKey) + " '" + HEMOSCAN_BIN + "' deid " + io +
                                    q(d / "env.dcm") + " --key-env HEMOSCAN_TEST_DEID_KEY");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(hemoscan::read_file(d / "env.dcm"), hemoscan::read_file(d / "file.dcm"));

    r = run_hemoscan("deid " + io + q(d / "b.dcm") + " --key-env HEMOSCAN_TEST_DEID_UNSET_VARIABLE");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    hemoscan::test::write_text(d / "empty.key", "\n");
    r = run_hemoscan("deid " + io + q(d / "b.dcm") + " --key-file " + q(d / "empty.key"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("empty"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "b.dcm"));
}

TEST(DeidCli, ErrorsExitWithOneAndWriteNothing) {
    hemoscan::test::TempDir d;
    deid_cli_series(d / "burned", 1, "YES");
    const std::string key = " --key-file " + q(deid_cli_key_file(d.path()));

    auto r = run_hemoscan("deid " + q(d / "burned") + " " + q(d / "out") + key);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("BurnedInAnnotation"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--allow-burned-in"), std::string::npos) << r.output;
    EXPECT_TRUE(!fs::exists(d / "out") || fs::is_empty(d / "out"));
    r = run_hemoscan("deid " + q(d / "burned") + " " + q(d / "out") + key + " --allow-burned-in");
    EXPECT_EQ(r.exit_code, 0) << r.output;

    r = run_hemoscan("deid " + q(d / "burned") + " " + q(d / "burned" / "deid") + key + " --allow-burned-in");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("inside"), std::string::npos) << r.output;

    hemoscan::test::write_text(d / "report.txt", "not an image\n");
    r = run_hemoscan("deid " + q(d / "report.txt") + " " + q(d / "x.dcm") + key);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("report.txt: not a DICOM file"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "x.dcm"));

    r = run_hemoscan("deid " + q(d / "burned") + " " + q(d / "o2") + key + " --max-date-shift-days 0");
    EXPECT_EQ(r.exit_code, 2) << r.output;
}

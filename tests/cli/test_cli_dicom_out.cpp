// Black-box tests of `--dicom-out` through the binary: `segment` writes a SEG, an SR and key-image captures
// per DICOM input, `predict` an SR and captures; inputs that are not DICOM get a warning naming them and no
// folder. The objects' content is checked in tests/report/test_dicom_outputs.cpp; here: which files, where,
// and that DCMTK's dsr2xml reads the SR.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "support/test_util.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path kDicomOutCliModels = fs::path(HEMOSCAN_SOURCE_DIR) / "tests" / "golden";

std::vector<std::string> dicom_out_cli_files(const fs::path& dir) {
    std::vector<std::string> names;
    if (!fs::is_directory(dir)) return names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// One synthetic study with a bleed (a DICOM series of 6 slices of 64 x 64) and a PNG beside it.
void dicom_out_cli_inputs(const fs::path& d) {
    const auto r = hemoscan::test::run_hemoscan("synth --out " + hemoscan::test::q(d / "syn") +
                                                " --studies 1 --size 64 --slices 6 --seed 11 --p-bleed 1 --format dicom"
                                                " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_TRUE(fs::is_directory(d / "syn" / "dicom" / "study_0000"));
    cv::imwrite((d / "slice.png").string(), cv::Mat(64, 64, CV_8U, cv::Scalar(80)));
}

}  // namespace

TEST(CliDicomOut, SegmentWritesSegSrAndCapturesAndWarnsForImages) {
    hemoscan::test::TempDir d;
    dicom_out_cli_inputs(d.path());
    const std::string series = hemoscan::test::q(d / "syn" / "dicom" / "study_0000");
    const auto r = hemoscan::test::run_hemoscan(
        "segment --model " + hemoscan::test::q(kDicomOutCliModels / "seg.pt") + " " + series + " " +
        hemoscan::test::q(d / "slice.png") + " --out " + hemoscan::test::q(d / "seg") + " --dicom-out " +
        hemoscan::test::q(d / "dcm") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto files = dicom_out_cli_files(d / "dcm" / "study_0000");
    ASSERT_GE(files.size(), 3u) << r.output;
    EXPECT_EQ(files[0], "sc_1.dcm");
    EXPECT_TRUE(std::count(files.begin(), files.end(), "seg.dcm") == 1) << r.output;  // the fixed model finds bleed
    EXPECT_TRUE(std::count(files.begin(), files.end(), "sr.dcm") == 1);
    EXPECT_LE(files.size(), 2u + 3u);  // at most three key slices
    EXPECT_EQ(dicom_out_cli_files(d / "dcm"), std::vector<std::string>{"study_0000"});  // nothing for the PNG
    EXPECT_NE(r.output.find((d / "slice.png").string()), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("no DICOM outputs"), std::string::npos) << r.output;
    const auto xml = hemoscan::test::run_command("dsr2xml " + hemoscan::test::q(d / "dcm" / "study_0000" / "sr.dcm"));
    EXPECT_EQ(xml.exit_code, 0) << xml.output;
    EXPECT_NE(xml.output.find("Volume"), std::string::npos);
    EXPECT_TRUE(fs::exists(d / "seg" / "volumes.csv"));  // the usual outputs too
    // The SEG's positions are in the source series' Frame of Reference (synth writes one per series).
    auto frame_of = [](const fs::path& file) {
        const auto dump = hemoscan::test::run_command("dcmdump -q +P 0020,0052 " + hemoscan::test::q(file));
        const size_t a = dump.output.find('['), b = dump.output.find(']');
        return a == std::string::npos || b == std::string::npos ? std::string() : dump.output.substr(a + 1, b - a - 1);
    };
    const fs::path source = *fs::directory_iterator(d / "syn" / "dicom" / "study_0000");
    EXPECT_FALSE(frame_of(source).empty());
    EXPECT_EQ(frame_of(d / "dcm" / "study_0000" / "seg.dcm"), frame_of(source));
}

TEST(CliDicomOut, PredictWritesSrAndCapturesAndWarnsForImages) {
    hemoscan::test::TempDir d;
    dicom_out_cli_inputs(d.path());
    const auto r = hemoscan::test::run_hemoscan(
        "predict --model " + hemoscan::test::q(kDicomOutCliModels / "cls.pt") + " " +
        hemoscan::test::q(d / "syn" / "dicom" / "study_0000") + " " + hemoscan::test::q(d / "slice.png") +
        " --dicom-out " + hemoscan::test::q(d / "dcm") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(dicom_out_cli_files(d / "dcm" / "study_0000"), (std::vector<std::string>{"sc_1.dcm", "sr.dcm"}));
    EXPECT_EQ(dicom_out_cli_files(d / "dcm"), std::vector<std::string>{"study_0000"});
    EXPECT_NE(r.output.find((d / "slice.png").string() + ": no DICOM files to reference"), std::string::npos)
        << r.output;
    const auto xml = hemoscan::test::run_command("dsr2xml " + hemoscan::test::q(d / "dcm" / "study_0000" / "sr.dcm"));
    EXPECT_EQ(xml.exit_code, 0) << xml.output;
    EXPECT_NE(xml.output.find("Probability of"), std::string::npos);

    // A file where the folder should be is a usage error, before any work.
    hemoscan::test::write_text(d / "taken", "x");
    using hemoscan::test::q;
    const auto bad = hemoscan::test::run_hemoscan("predict --model " + q(kDicomOutCliModels / "cls.pt") + " " +
                                                  q(d / "slice.png") + " --dicom-out " + q(d / "taken"));
    EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

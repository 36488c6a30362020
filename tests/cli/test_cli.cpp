// Black-box tests of the hemoscan binary: exit codes, messages, outputs.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "hemoscan/io/dicom.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using test::q;
using test::run_hemoscan;
using test::TempDir;
namespace fs = std::filesystem;

namespace {


using test::read_json;

// A labels.csv dataset of small PNGs: `n` positives (bright disc) and `n` negatives.
void make_png_dataset(const fs::path& dir, int n, int pos_size = 64, int neg_size = 64) {
    fs::create_directories(dir);
    std::string csv = "id, hemorrhage\n";
    for (int i = 0; i < 2 * n; ++i) {
        bool pos = i < n;
        int s = pos ? pos_size : neg_size;
        cv::Mat img(s, s, CV_8UC1, cv::Scalar(20));
        cv::circle(img, {s / 2, s / 2}, s / 3, cv::Scalar(pos ? 200 : 120), -1);
        char id[16];
        std::snprintf(id, sizeof id, "%03d", i);
        cv::imwrite((dir / (std::string(id) + ".png")).string(), img);
        csv += std::string(id) + "," + (pos ? "1" : "0") + "\n";
    }
    test::write_text(dir / "labels.csv", csv);
}

// A 4-slice CT series, 0.5 mm pixels, 3 mm apart, files named and numbered against position order.
// Slice at position index k has a constant value of 40*(k-1) HU in its left half and 1000 HU right.
void make_series(const fs::path& dir) {
    DicomWriteOptions o;
    o.study_uid = new_dicom_uid();
    o.series_uid = new_dicom_uid();
    o.series_description = "HEAD";
    o.pixel_spacing = {0.5, 0.5};
    o.slice_thickness = 3;
    const int order[4] = {2, 0, 3, 1};  // file i holds position order[i]
    for (int i = 0; i < 4; ++i) {
        int k = order[i];
        cv::Mat hu(16, 20, CV_32F, cv::Scalar(40.0 * (k - 1)));
        hu(cv::Rect(10, 0, 10, 16)).setTo(1000);
        o.position = {-5, -4, 3.0 * k};
        o.instance_number = 10 - i;
        o.sop_uid = new_dicom_uid();
        write_dicom_ct(dir / ("img" + std::to_string(i) + ".dcm"), hu, o);
    }
}

}  // namespace

TEST(Cli, HelpAndVersion) {
    auto r = run_hemoscan("--help");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.output.find("convert"), std::string::npos);
    EXPECT_NE(r.output.find("describe"), std::string::npos);
    r = run_hemoscan("--version");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.output.find("hemoscan 0."), std::string::npos);
    r = run_hemoscan("convert --help");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.output.find("--window"), std::string::npos);
}

TEST(Cli, UsageErrorsExitTwo) {
    EXPECT_EQ(run_hemoscan("").exit_code, 2);
    EXPECT_EQ(run_hemoscan("frobnicate").exit_code, 2);
    EXPECT_EQ(run_hemoscan("describe").exit_code, 2);  // missing DATA
    TempDir d;
    make_series(d / "s");
    auto r = run_hemoscan("convert " + q(d / "s") + " --out " + q(d / "o") + " --window sideways");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("sideways"), std::string::npos);
    EXPECT_FALSE(fs::exists(d / "o" / "index.csv"));
}

TEST(Cli, DescribeLabelsCsv) {
    TempDir d;
    make_png_dataset(d / "data", 6, 96, 48);
    auto r = run_hemoscan("describe " + q(d / "data") + " --out " + q(d / "out"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("hemorrhage"), std::string::npos);
    EXPECT_NE(r.output.find("image size differs by class"), std::string::npos) << r.output;
    auto j = read_json(d / "out" / "describe.json");
    EXPECT_EQ(j["images"], 12);
    EXPECT_EQ(j["patients"], 12);
    EXPECT_EQ(j["labels"]["hemorrhage"]["positives"], 6);
    EXPECT_EQ(j["labels"]["hemorrhage"]["negatives"], 6);
    EXPECT_DOUBLE_EQ(j["width"]["max"].get<double>(), 96.0);
    EXPECT_DOUBLE_EQ(j["labels"]["hemorrhage"]["width"]["negatives"]["median"].get<double>(), 48.0);
    cv::Mat chart = cv::imread((d / "out" / "describe.png").string());
    EXPECT_FALSE(chart.empty());
}

// The RSNA layout as synth writes it: describe finds its studies in the DICOM headers.
TEST(Cli, SynthRsnaLayoutAndDescribeStudies) {
    TempDir d;
    auto r = run_hemoscan("synth --out " + q(d / "cohort") + " --studies 3 --seed 4 --size 48 --slices 5 --format rsna");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(d / "cohort" / "rsna" / "stage_2_train.csv"));
    EXPECT_FALSE(fs::exists(d / "cohort" / "manifest.csv"));
    r = run_hemoscan("describe " + q(d / "cohort" / "rsna") + " --out " + q(d / "out"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("(rsna)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("Studies   3"), std::string::npos) << r.output;
    const auto j = read_json(d / "out" / "describe.json");
    EXPECT_EQ(j["images"], 15);
    EXPECT_EQ(j["studies"], 3);
    EXPECT_EQ(j["labels"].size(), 6u);
    EXPECT_TRUE(j["labels"]["any"].contains("study_prevalence"));
}

TEST(Cli, DescribeErrorsNameTheFile) {
    TempDir d;
    auto r = run_hemoscan("describe " + q(d / "nope"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("nope"), std::string::npos) << r.output;

    make_png_dataset(d / "bad", 2);
    test::write_text(d / "bad" / "labels.csv", "id,hemorrhage\n000,1\n001,7\n");
    r = run_hemoscan("describe " + q(d / "bad"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("labels.csv:3"), std::string::npos) << r.output;

    make_png_dataset(d / "corrupt", 2);
    test::write_text(d / "corrupt" / "001.png", "not a png");
    r = run_hemoscan("describe " + q(d / "corrupt") + " --out " + q(d / "cout"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("001.png"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "cout" / "describe.json"));
}

TEST(Cli, ConvertSeriesWindowsInPositionOrder) {
    TempDir d;
    make_series(d / "series");
    auto r = run_hemoscan("convert " + q(d / "series") + " --out " + q(d / "png"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // One series folder with four slices, in position order: slice k has -40, 0, 40, 80 HU on the
    // left -> brain window 40/80 -> 0, 0, 128 (0.5*255=127.5 rounds to 128), 255.
    std::vector<fs::path> dirs;
    for (auto& e : fs::directory_iterator(d / "png"))
        if (e.is_directory()) dirs.push_back(e.path());
    ASSERT_EQ(dirs.size(), 1u);
    EXPECT_NE(dirs[0].filename().string().find("HEAD"), std::string::npos);
    const int expected[4] = {0, 0, 128, 255};
    for (int k = 0; k < 4; ++k) {
        char name[32];
        std::snprintf(name, sizeof name, "slice_%04d.png", k + 1);
        cv::Mat png = cv::imread((dirs[0] / name).string(), cv::IMREAD_UNCHANGED);
        ASSERT_FALSE(png.empty()) << name;
        EXPECT_EQ(png.type(), CV_8UC1);
        EXPECT_EQ(png.at<uint8_t>(5, 2), expected[k]) << name;
        EXPECT_EQ(png.at<uint8_t>(5, 15), 255) << name;  // 1000 HU
    }
    std::ifstream idx(d / "png" / "index.csv");
    std::string header;
    std::getline(idx, header);
    EXPECT_EQ(header, "png,source,series_uid,slice,position_z_mm,instance_number,window");
}

TEST(Cli, ConvertRgbAndSize) {
    TempDir d;
    make_series(d / "series");
    auto r = run_hemoscan("convert " + q(d / "series" / "img1.dcm") + " --out " + q(d / "png") +
                          " --window rgb --size 32");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    cv::Mat png = cv::imread((d / "png" / "img1.png").string(), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(png.type(), CV_8UC3);
    EXPECT_EQ(png.rows, 32);
    EXPECT_EQ(png.cols, 32);
    // img1 holds position 0: -40 HU left. BGR order on disk: B = bone, G = subdural, R = brain.
    cv::Vec3b px = png.at<cv::Vec3b>(16, 2);
    EXPECT_EQ(px[2], 0);   // brain 40/80: -40 HU is below 0 -> 0
    EXPECT_EQ(px[1], 0);   // subdural 80/200: -40 < -20 -> 0
    EXPECT_EQ(px[0], 69);  // bone 600/2800: (-40 + 800) / 2800 * 255 = 69.2 -> 69
    cv::Vec3b right = png.at<cv::Vec3b>(16, 30);  // 1000 HU
    EXPECT_EQ(right[2], 255);
    EXPECT_EQ(right[1], 255);
    EXPECT_EQ(right[0], 164);  // (1000 + 800) / 2800 * 255 = 163.9 -> 164
}

TEST(Cli, ConvertRejectsCorruptAndWrongModality) {
    TempDir d;
    test::write_text(d / "broken.dcm", std::string(132, '\0') + "DICMgarbage");
    auto r = run_hemoscan("convert " + q(d / "broken.dcm") + " --out " + q(d / "png"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("broken.dcm"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "png" / "broken.png"));

    DicomWriteOptions o;
    o.modality = "MR";
    write_dicom_ct(d / "mr.dcm", cv::Mat(8, 8, CV_32F, cv::Scalar(100)), o);
    r = run_hemoscan("convert " + q(d / "mr.dcm") + " --out " + q(d / "png"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("mr.dcm"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("MR"), std::string::npos) << r.output;
    r = run_hemoscan("convert " + q(d / "mr.dcm") + " --out " + q(d / "png") + " --modality mr");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(d / "png" / "mr.png"));
    // The readers' size limits (issue 28) are options of the tool: 8 x 8 = 64 pixels over a limit of 32.
    r = run_hemoscan("--max-slice-pixels 32 convert " + q(d / "mr.dcm") + " --out " + q(d / "png2") + " --modality mr");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("mr.dcm: the image (Rows x Columns) is 8 x 8 pixels, over the limit of 32"), std::string::npos)
        << r.output;
    EXPECT_FALSE(fs::exists(d / "png2" / "mr.png"));
}

TEST(Cli, DescribeRealHeadCt) {
    fs::path data = fs::path(HEMOSCAN_SHARED_DIR) / "data" / "head_ct";
    if (!fs::exists(data / "labels.csv")) GTEST_SKIP() << "no " << data;
    TempDir d;
    auto r = run_hemoscan("describe " + q(data) + " --out " + q(d / "out"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = read_json(d / "out" / "describe.json");
    EXPECT_EQ(j["images"], 200);
    EXPECT_EQ(j["labels"]["hemorrhage"]["positives"], 100);
    EXPECT_EQ(j["labels"]["hemorrhage"]["negatives"], 100);
}

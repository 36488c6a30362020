// Segmentation datasets: nnU-Net folders and manifests of PNG pairs written here; every error names
// its file (geometry mismatches say what differs).
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "hemoscan/data/seg_dataset.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/nifti.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using test::expect_input_error;
using test::TempDir;
using test::write_text;
namespace fs = std::filesystem;

namespace {

const char* kDatasetJson = R"({
  "channel_names": {"0": "CT"},
  "labels": {"background": 0, "epidural": 1, "subdural": 2, "calcification": 3},
  "numTraining": 2,
  "file_ending": ".nii.gz"
})";

Geometry geometry() {
    Geometry g;
    g.spacing = {0.5, 0.75, 4.0};
    g.origin = {-10, 20, -30};
    return g;
}

// rows x cols x depth of -1000 HU with a 40 HU square on slice 1.
Volume ct(const Geometry& g, int rows = 12, int cols = 10, int depth = 3) {
    Volume v;
    v.geometry = g;
    for (int k = 0; k < depth; ++k) {
        cv::Mat s(rows, cols, CV_32F, cv::Scalar(-1000));
        if (k == 1) s(cv::Rect(2, 3, 4, 5)).setTo(40);
        v.slices.push_back(s);
    }
    return v;
}

// Label map matching ct(): value `label` on the square.
std::vector<cv::Mat> labels(int label, int rows = 12, int cols = 10, int depth = 3) {
    std::vector<cv::Mat> out;
    for (int k = 0; k < depth; ++k) {
        cv::Mat s(rows, cols, CV_8U, cv::Scalar(0));
        if (k == 1) s(cv::Rect(2, 3, 4, 5)).setTo(label);
        out.push_back(s);
    }
    return out;
}

void write_case(const fs::path& root, const std::string& id, int label, const Geometry& image_geometry,
                const Geometry& mask_geometry) {
    write_nifti(root / "imagesTr" / (id + "_0000.nii.gz"), ct(image_geometry));
    write_nifti_labels(root / "labelsTr" / (id + ".nii.gz"), labels(label), mask_geometry);
}

void write_nnunet(const fs::path& root) {
    write_text(root / "dataset.json", kDatasetJson);
    write_case(root, "case_b", 2, geometry(), geometry());
    write_case(root, "case_a", 1, geometry(), geometry());
}

}  // namespace

TEST(SegDataset, NnunetFolder) {
    TempDir d;
    write_nnunet(d / "ds");
    const SegDataset ds = open_seg_dataset(d / "ds");
    EXPECT_EQ(ds.form, "nnunet");
    EXPECT_EQ(ds.class_names, (std::vector<std::string>{"background", "epidural", "subdural", "calcification"}));
    EXPECT_EQ(ds.channel_names, std::vector<std::string>{"CT"});
    EXPECT_EQ(ds.bleed_classes, (std::vector<int>{1, 2}));  // calcification is no bleed
    ASSERT_EQ(ds.size(), 2u);
    EXPECT_EQ(ds.cases[0].id, "case_a");  // sorted
    EXPECT_EQ(ds.cases[1].id, "case_b");
    EXPECT_EQ(ds.cases[0].mask, d / "ds" / "labelsTr" / "case_a.nii.gz");
    ASSERT_EQ(ds.cases[0].images.size(), 1u);

    const SegVolume v = load_seg_case(ds, 1);
    EXPECT_EQ(v.id, "case_b");
    ASSERT_EQ(v.image.depth(), 3);
    ASSERT_EQ(v.mask.depth(), 3);
    EXPECT_FLOAT_EQ(v.image.slices[1].at<float>(4, 3), 40.f);
    EXPECT_FLOAT_EQ(v.image.slices[1].at<float>(0, 0), -1000.f);
    EXPECT_TRUE(v.image.slice_meta.at(1).is_hu);
    EXPECT_EQ(cv::countNonZero(v.mask.slices[1] == 2), 20);
    EXPECT_EQ(cv::countNonZero(v.mask.slices[0]), 0);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(v.mask.geometry.spacing[i], geometry().spacing[i], 1e-6);
}

TEST(SegDataset, NnunetV1LabelsAndMissingLabelFile) {
    TempDir d;
    write_nnunet(d / "ds");
    // nnU-Net v1 writes labels as {"value": "name"}.
    write_text(d / "ds" / "dataset.json",
               R"({"modality": {"0": "CT"}, "labels": {"0": "background", "1": "bleed", "2": "x", "3": "y"}})");
    EXPECT_EQ(open_seg_dataset(d / "ds").class_names[1], "bleed");
    fs::remove(d / "ds" / "labelsTr" / "case_b.nii.gz");
    expect_input_error([&] { open_seg_dataset(d / "ds"); }, {(d / "ds" / "labelsTr" / "case_b.nii.gz").string(), "missing"});
}

TEST(SegDataset, BadDatasetJson) {
    TempDir d;
    write_nnunet(d / "ds");
    const std::string file = (d / "ds" / "dataset.json").string();
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"{ not json", "not valid JSON"},
        {R"({"channel_names": {"0": "CT"}})", "labels"},
        {R"({"labels": {"background": 0, "bleed": 1}})", "channel_names"},
        {R"({"channel_names": {"0": "CT"}, "labels": {"background": 0, "bleed": 2}})", "without gaps"},
        {R"({"channel_names": {"0": "CT"}, "labels": {"bleed": 1}})", "background"},
        {R"({"channel_names": {"0": "CT"}, "labels": {"background": 0, "bleed": [1, 2]}})", "region"},
        {R"({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 1}})", "used by two"},
        {R"({"channel_names": {"0": "CT", "1": "T1"}, "labels": {"background": 0, "a": 1}})", "2 channels"},
        {R"({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1}, "file_ending": ".mha"})", ".mha"},
    };
    for (const auto& [text, part] : bad) {
        write_text(d / "ds" / "dataset.json", text);
        expect_input_error([&] { open_seg_dataset(d / "ds"); }, {file, part});
    }
    expect_input_error([&] { open_seg_dataset(d / "nope"); }, {(d / "nope").string()});
    fs::create_directories(d / "empty");
    expect_input_error([&] { open_seg_dataset(d / "empty"); }, {(d / "empty").string(), "dataset.json"});
}

// Each geometry field that differs between image and mask is named, with both files.
TEST(SegDataset, GeometryMismatch) {
    struct Case {
        const char* what;
        Geometry mask;
    };
    std::vector<Case> cases;
    Geometry g = geometry();
    g.spacing[2] = 5.0;
    cases.push_back({"spacing", g});
    g = geometry();
    g.origin[1] += 0.5;
    cases.push_back({"origin", g});
    g = geometry();
    g.direction = {0, 1, 0, -1, 0, 0, 0, 0, 1};  // rotated 90 degrees in plane
    cases.push_back({"direction", g});
    for (const Case& c : cases) {
        TempDir d;
        write_nnunet(d / "ds");
        write_case(d / "ds", "case_a", 1, geometry(), c.mask);
        const SegDataset ds = open_seg_dataset(d / "ds");
        expect_input_error([&] { load_seg_case(ds, 0); },
                           {(d / "ds" / "labelsTr" / "case_a.nii.gz").string(),
                            (d / "ds" / "imagesTr" / "case_a_0000.nii.gz").string(), c.what, "geometry mismatch"});
        EXPECT_NO_THROW(load_seg_case(ds, 1)) << c.what;
    }
    // A size mismatch is caught as well.
    TempDir d;
    write_nnunet(d / "ds");
    write_nifti_labels(d / "ds" / "labelsTr" / "case_a.nii.gz", labels(1, 12, 10, 2), geometry());
    expect_input_error([&] { load_seg_case(open_seg_dataset(d / "ds"), 0); },
                       {(d / "ds" / "labelsTr" / "case_a.nii.gz").string(), "10x12x2", "10x12x3"});
}

TEST(SegDataset, LabelOutOfRange) {
    TempDir d;
    write_nnunet(d / "ds");
    write_case(d / "ds", "case_b", 4, geometry(), geometry());  // classes are 0..3
    const SegDataset ds = open_seg_dataset(d / "ds");
    expect_input_error([&] { load_seg_case(ds, 1); },
                       {(d / "ds" / "labelsTr" / "case_b.nii.gz").string(), "label value 4", "slice 1", "0..3"});
}

// Issue 28: PNG masks are read through the image reader's checks (cv::imread before): a small mask
// claiming 12000 x 12000 pixels is refused before OpenCV allocates it, naming the file.
TEST(SegDataset, MaskClaimingAHugeSizeIsRefused) {
    TempDir d;
    const fs::path root = d / "m";
    fs::create_directories(root);
    ASSERT_TRUE(cv::imwrite((root / "0.png").string(), cv::Mat(8, 8, CV_8U, cv::Scalar(30))));
    std::vector<uchar> png;
    ASSERT_TRUE(cv::imencode(".png", cv::Mat(8, 8, CV_8U, cv::Scalar(1)), png));
    for (const size_t at : {16, 20}) {  // IHDR width, height (big-endian)
        png[at + 2] = 12000 >> 8;
        png[at + 3] = 12000 & 0xFF;
    }
    write_text(root / "0_mask.png", std::string(png.begin(), png.end()));
    write_text(root / "manifest.csv", "path,mask\n0.png,0_mask.png\n");
    expect_input_error([&] { open_seg_dataset(root); }, {(root / "0_mask.png").string(), "12000 x 12000 pixels"});
}

TEST(SegDataset, ManifestOfPngPairs) {
    TempDir d;
    const fs::path root = d / "m";
    fs::create_directories(root / "img");
    for (int i = 0; i < 3; ++i) {
        cv::Mat img(16, 20, CV_8U, cv::Scalar(30));
        img(cv::Rect(4, 4, 6, 5)).setTo(200);
        cv::Mat mask(16, 20, CV_8U, cv::Scalar(0));
        mask(cv::Rect(4, 4, 6, 5)).setTo(i == 2 ? 2 : 1);
        ASSERT_TRUE(cv::imwrite((root / "img" / (std::to_string(i) + ".png")).string(), img));
        ASSERT_TRUE(cv::imwrite((root / "img" / (std::to_string(i) + "_mask.png")).string(), mask));
    }
    write_text(root / "manifest.csv",
               "path,mask,patient\nimg/0.png,img/0_mask.png,p1\nimg/1.png,img/1_mask.png,p1\nimg/2.png,img/2_mask.png,p2\n");
    // Without labels.json: classes up to the largest value in the masks.
    SegDataset ds = open_seg_dataset(root);
    EXPECT_EQ(ds.form, "manifest");
    EXPECT_EQ(ds.class_names, (std::vector<std::string>{"background", "class_1", "class_2"}));
    EXPECT_EQ(ds.bleed_classes, (std::vector<int>{1, 2}));
    ASSERT_EQ(ds.size(), 3u);
    EXPECT_EQ(ds.cases[1].patient, "p1");
    EXPECT_EQ(ds.cases[2].line, 4);
    SegVolume v = load_seg_case(ds, 2);
    ASSERT_EQ(v.image.depth(), 1);
    EXPECT_TRUE(v.image.slice_meta[0].already_windowed);
    EXPECT_FLOAT_EQ(v.image.slices[0].at<float>(5, 5), 200.f);
    EXPECT_EQ(cv::countNonZero(v.mask.slices[0] == 2), 30);

    write_text(root / "labels.json", R"({"background": 0, "bleed": 1, "calcification": 2})");
    ds = open_seg_dataset(root);
    EXPECT_EQ(ds.class_names, (std::vector<std::string>{"background", "bleed", "calcification"}));
    EXPECT_EQ(ds.bleed_classes, std::vector<int>{1});

    // Value 2 is out of range for a two-class table: the message names the manifest line and the mask.
    write_text(root / "labels.json", R"({"background": 0, "bleed": 1})");
    ds = open_seg_dataset(root);
    expect_input_error([&] { load_seg_case(ds, 2); },
                       {(root / "manifest.csv").string() + ":4", (root / "img" / "2_mask.png").string(), "label value 2"});

    // A mask of the wrong size; a missing mask file; no mask column.
    ASSERT_TRUE(cv::imwrite((root / "img" / "0_mask.png").string(), cv::Mat(8, 8, CV_8U, cv::Scalar(0))));
    expect_input_error([&] { load_seg_case(ds, 0); }, {(root / "img" / "0_mask.png").string(), "8x8x1", "20x16x1"});
    fs::remove(root / "img" / "1_mask.png");
    expect_input_error([&] { open_seg_dataset(root); }, {(root / "manifest.csv").string() + ":3", "1_mask.png", "not found"});
    write_text(root / "manifest.csv", "path,any\nimg/0.png,1\n");
    expect_input_error([&] { open_seg_dataset(root); }, {(root / "manifest.csv").string(), "mask"});

    // Found by fuzzing: a path the file system refuses (a name over 255 bytes) is a missing file with its
    // line, not a std::filesystem_error.
    const std::string long_name(300, 'a');
    write_text(root / "manifest.csv", "path,mask\nimg/0.png,img/0_mask.png\n" + long_name + ",img/2_mask.png\n");
    expect_input_error([&] { open_seg_dataset(root); }, {(root / "manifest.csv").string() + ":3", "not found"});
    write_text(root / "manifest.csv", "path,mask\nimg/0.png," + long_name + "\n");
    expect_input_error([&] { open_seg_dataset(root); }, {(root / "manifest.csv").string() + ":2", "mask", "not found"});
}

// Black-box tests of segmentation through the binary: synth --format nnunet, train --task segment,
// evaluate (metrics.json), segment (NIfTI in the input's geometry, overlays, volumes), and errors.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/nifti.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using test::q;
using test::read_json;
using test::run_hemoscan;
using test::TempDir;
namespace fs = std::filesystem;

namespace {


void expect_same_geometry(const Geometry& a, const Geometry& b) {
    for (int i = 0; i < 3; ++i) {
        EXPECT_NEAR(a.spacing[i], b.spacing[i], 1e-4) << "spacing " << i;
        EXPECT_NEAR(a.origin[i], b.origin[i], 1e-3) << "origin " << i;
    }
    for (int i = 0; i < 9; ++i) EXPECT_NEAR(a.direction[i], b.direction[i], 1e-4) << "direction " << i;
}

size_t count_files(const fs::path& dir) {
    if (!fs::exists(dir)) return 0;
    size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
    return n;
}

}  // namespace

TEST(CliSegment, SynthTrainEvaluateSegment) {
    TempDir d;
    // Four tiny studies, as nnU-Net data and as DICOM series.
    auto r = run_hemoscan("synth --out " + q(d / "syn") +
                          " --studies 4 --size 64 --slices 8 --seed 5 --p-bleed 1 --format nnunet,dicom --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto ds = read_json(d / "syn" / "nnunet" / "dataset.json");
    EXPECT_EQ(ds["channel_names"], nlohmann::json({{"0", "CT"}}));
    EXPECT_EQ(ds["labels"]["background"], 0);
    EXPECT_EQ(ds["labels"]["epidural"], 1);
    EXPECT_EQ(ds["labels"]["subdural"], 5);
    EXPECT_EQ(ds["labels"]["calcification"], 6);
    EXPECT_EQ(ds["numTraining"], 4);
    EXPECT_EQ(ds["file_ending"], ".nii.gz");
    const fs::path image = d / "syn" / "nnunet" / "imagesTr" / "study_0000_0000.nii.gz";
    ASSERT_TRUE(fs::exists(image));
    ASSERT_TRUE(fs::exists(d / "syn" / "nnunet" / "labelsTr" / "study_0003.nii.gz"));

    r = run_hemoscan("train --task segment --data " + q(d / "syn" / "nnunet") + " --out " + q(d / "run") +
                     " --depth 2 --width 0.25 --size 64 --epochs 2 --batch 4 --threads 1 --workers 1 --val-fraction 0.25");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("Dice any"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("post-processing: foreground components below"), std::string::npos) << r.output;
    ASSERT_TRUE(fs::exists(d / "run" / "model.pt"));
    EXPECT_EQ(read_json(d / "run" / "config.json")["options"]["model"], "unet");  // the default for segment
    EXPECT_EQ(read_json(d / "run" / "config.json")["options"]["crop_head"], false);

    r = run_hemoscan("evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(d / "syn" / "nnunet") + " --out " +
                     q(d / "eval") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto m = read_json(d / "eval" / "metrics.json");
    EXPECT_EQ(m["n"], 4);
    for (const char* cls : {"epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "calcification",
                            "any"}) {
        EXPECT_TRUE(m["dice"].contains(cls)) << cls;
        EXPECT_TRUE(m["hd95_mm"].contains(cls)) << cls;
        EXPECT_TRUE(m["volume_abs_err_ml"].contains(cls)) << cls;
    }
    EXPECT_TRUE(m["dice_mean"].is_number());
    EXPECT_TRUE(m.contains("lesion_sensitivity"));
    ASSERT_EQ(m["cases"].size(), 4u);
    EXPECT_GT(m["cases"][0]["volume_true_ml"].get<double>(), 0.0);  // --p-bleed 1: every study bleeds
    EXPECT_TRUE(fs::exists(d / "eval" / "cases.csv"));
    EXPECT_NE(r.output.find("false-positive"), std::string::npos) << r.output;

    // Post-processing: chosen at training (logged), overridable; 1000 mL removes every component.
    r = run_hemoscan("evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(d / "syn" / "nnunet") + " --out " +
                     q(d / "eval_pp") + " --threads 1 --min-component-ml 1000");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const auto& c : read_json(d / "eval_pp" / "metrics.json")["cases"]) EXPECT_EQ(c["volume_ml"], 0.0) << c.dump();
    // An ensemble (--model twice): the same model twice averages to its own probabilities, so the
    // figures equal the single model's; metrics.json names the members.
    r = run_hemoscan("evaluate --model " + q(d / "run" / "model.pt") + " --model " + q(d / "run" / "model.pt") +
                     " --data " + q(d / "syn" / "nnunet") + " --out " + q(d / "eval_ens") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto me = read_json(d / "eval_ens" / "metrics.json");
    EXPECT_EQ(me["ensemble"].size(), 2u);
    EXPECT_EQ(me["dice"], m["dice"]);
    EXPECT_EQ(me["min_component_ml"], m["min_component_ml"]);
    r = run_hemoscan("evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(d / "syn" / "nnunet") + " --out " +
                     q(d / "eval_bad") + " --min-component-ml -2");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--min-component-ml"), std::string::npos) << r.output;

    // segment: a NIfTI volume, a DICOM series folder and a PNG image.
    cv::Mat png(50, 70, CV_8U, cv::Scalar(0));
    cv::circle(png, {35, 25}, 20, cv::Scalar(110), -1);
    ASSERT_TRUE(cv::imwrite((d / "slice.png").string(), png));
    const fs::path series = d / "syn" / "dicom" / "study_0001";
    r = run_hemoscan("segment --model " + q(d / "run" / "model.pt") + " " + q(image) + " " + q(series) + " " +
                     q(d / "slice.png") + " --out " + q(d / "seg") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // Each --model takes one file, so the inputs after a second --model stay inputs.
    const auto rens = run_hemoscan("segment --model " + q(d / "run" / "model.pt") + " --model " +
                                   q(d / "run" / "model.pt") + " " + q(image) + " --out " + q(d / "seg_ens") + " --threads 1");
    ASSERT_EQ(rens.exit_code, 0) << rens.output;
    EXPECT_EQ(read_json(d / "seg_ens" / "volumes.json")["model"].size(), 2u);
    EXPECT_EQ(read_json(d / "seg_ens" / "volumes.json")["inputs"].size(), 1u);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("study_0000_0000: bleed"), std::string::npos) << r.output;

    const Volume in = read_nifti(image);
    const LabelVolume out = read_nifti_labels(d / "seg" / "study_0000_0000_seg.nii.gz");
    ASSERT_EQ(out.depth(), in.depth());
    EXPECT_EQ(out.slices[0].size(), in.slices[0].size());
    expect_same_geometry(out.geometry, in.geometry);
    const Volume dicom = read_dicom_series({series}).at(0);
    const LabelVolume out_dicom = read_nifti_labels(d / "seg" / "study_0001_seg.nii.gz");
    ASSERT_EQ(out_dicom.depth(), dicom.depth());
    expect_same_geometry(out_dicom.geometry, dicom.geometry);
    const LabelVolume out_png = read_nifti_labels(d / "seg" / "slice_seg.nii.gz");
    ASSERT_EQ(out_png.depth(), 1);
    EXPECT_EQ(out_png.slices[0].size(), cv::Size(70, 50));

    EXPECT_TRUE(fs::exists(d / "seg" / "study_0000_0000_overlay" / "slice_005.png"));  // the middle slice, always
    const cv::Mat overlay = cv::imread((d / "seg" / "study_0000_0000_overlay" / "slice_005.png").string());
    EXPECT_EQ(overlay.size(), in.slices[0].size());
    EXPECT_TRUE(fs::exists(d / "seg" / "slice_overlay" / "slice_001.png"));
    const auto vj = read_json(d / "seg" / "volumes.json");
    ASSERT_EQ(vj["inputs"].size(), 3u);
    for (const auto& item : vj["inputs"]) {
        EXPECT_TRUE(item["bleed_volume_ml"].is_number());
        EXPECT_EQ(item["volume_ml"].size(), 6u);  // every class but background
        for (const auto& o : item["overlays"]) EXPECT_TRUE(fs::exists(d / "seg" / o.get<std::string>())) << o;
    }
    std::ifstream csv(d / "seg" / "volumes.csv");
    std::string header, line;
    std::getline(csv, header);
    EXPECT_EQ(header.rfind("input,name,slices,bleed_ml,epidural_ml,", 0), 0u) << header;
    int rows = 0;
    while (std::getline(csv, line)) ++rows;
    EXPECT_EQ(rows, 3);

    // A bad input among good ones: exit 1, the file named, nothing written.
    test::write_text(d / "notes.txt", "not an image");
    r = run_hemoscan("segment --model " + q(d / "run" / "model.pt") + " " + q(image) + " " + q(d / "notes.txt") +
                     " --out " + q(d / "seg2") + " --threads 1");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("notes.txt"), std::string::npos) << r.output;
    EXPECT_EQ(count_files(d / "seg2"), 0u);
    r = run_hemoscan("segment --model " + q(d / "run" / "model.pt") + " " + q(d / "missing.nii.gz") + " --out " +
                     q(d / "seg3"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("missing.nii.gz"), std::string::npos) << r.output;
    EXPECT_EQ(count_files(d / "seg3"), 0u);

    // evaluate on data with other classes; cv with a segmentation model; a classifier file for segment.
    test::write_blob_dataset(d / "blobs", 4);
    r = run_hemoscan("evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(d / "blobs") + " --out " +
                     q(d / "ev2"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("dataset.json"), std::string::npos) << r.output;
    r = run_hemoscan("cv --data " + q(d / "blobs") + " --out " + q(d / "cv") + " --model unet");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("segmentation model"), std::string::npos) << r.output;
}

TEST(CliSegment, TrainErrors) {
    TempDir d;
    test::write_blob_dataset(d / "blobs", 4);
    // A classification dataset has no masks.
    auto r = run_hemoscan("train --task segment --data " + q(d / "blobs") + " --out " + q(d / "run") + " --size 32");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(d.path().string()), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "run" / "model.pt"));
    r = run_hemoscan("train --task segmentation --data " + q(d / "blobs") + " --out " + q(d / "run"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = run_hemoscan("train --task segment --model cnn --data " + q(d / "blobs") + " --out " + q(d / "run"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("not a segmentation model"), std::string::npos) << r.output;
    r = run_hemoscan("train --task segment --size 100 --data " + q(d / "blobs") + " --out " + q(d / "run"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("divisible"), std::string::npos) << r.output;
}

// Brain MRI end to end through the CLI: synth --modality mr, train/evaluate/predict an MR model on
// multi-sequence case folders and DICOM studies, and models refusing the other modality.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;
using test::q;
using test::run_hemoscan;

TEST(CliMr, SynthTrainEvaluatePredictAndModalityRefusals) {
    test::TempDir d;
    auto r = run_hemoscan("synth --modality mr --format classes,dicom --studies 18 --size 48 --slices 10 --sequences t2,swi"
                          " --seed 3 --threads 1 --out " + q(d / "mr"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* c : {"bleed", "calcified", "bleed+calcified"}) EXPECT_TRUE(fs::is_directory(d / "mr" / "classes" / c));
    r = run_hemoscan("train --data " + q(d / "mr" / "classes") + " --out " + q(d / "run") +
                     " --modality mr --model cnn --size 48 --batch 8 --epochs 3 --threads 1 --workers 1 --augment off"
                     " --median 3 --seed 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(test::read_json(d / "run" / "config.json")["options"]["sequences"], "t2,swi_mag,swi_phase")
        << "found in the case folders, in the known order";
    r = run_hemoscan("evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(d / "mr" / "classes") + " --out " +
                     q(d / "eval") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(test::read_json(d / "eval" / "metrics.json")["multiclass"]["classes"].size(), 3u);

    // A DICOM study with one series per sequence, and a PNG case folder.
    r = run_hemoscan("predict --model " + q(d / "run" / "model.pt") + " " + q(d / "mr" / "dicom" / "study_0000") + " " +
                     q(d / "mr" / "classes" / "calcified" / "study_0001") + " --out " + q(d / "pred.json") +
                     " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("MR model; channels: t2, swi_mag, swi_phase"), std::string::npos) << r.output;
    const auto pj = test::read_json(d / "pred.json");
    ASSERT_EQ(pj.size(), 2u) << pj.dump(2);
    EXPECT_EQ(pj[0]["kind"], "sequences");
    EXPECT_EQ(pj[0]["sequences"], nlohmann::json({"t2", "swi_mag", "swi_phase"}));
    EXPECT_EQ(pj[0]["slices"].size(), 10u);
    EXPECT_EQ(pj[1]["kind"], "sequences");

    // The MR model refuses CT; a CT model refuses MR.
    r = run_hemoscan("synth --format dicom,classes --studies 6 --size 48 --slices 10 --threads 1 --seed 4 --out " +
                     q(d / "ct"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_hemoscan("predict --model " + q(d / "run" / "model.pt") + " " + q(d / "ct" / "dicom" / "study_0000"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("where MR is expected"), std::string::npos) << r.output;
    r = run_hemoscan("train --data " + q(d / "ct" / "classes") + " --out " + q(d / "ctrun") +
                     " --model cnn --size 48 --batch 8 --epochs 1 --threads 1 --workers 1 --augment off");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_hemoscan("predict --model " + q(d / "ctrun" / "model.pt") + " " + q(d / "mr" / "dicom" / "study_0000" / "t2"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("modality MR where CT is expected"), std::string::npos) << r.output;
    r = run_hemoscan("train --data " + q(d / "mr" / "classes") + " --out " + q(d / "bad") +
                     " --model cnn --size 48 --epochs 1 --threads 1");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("a folder of MR sequences"), std::string::npos) << r.output;
}

TEST(CliMr, DemoWritesTheMriReport) {
    test::TempDir d;
    const auto r = run_hemoscan("demo --modality mr --out " + q(d / "demo") +
                                " --train-studies 9 --test-studies 6 --epochs 1 --size 48 --threads 1 --seed 7");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string html = read_file(d / "demo" / "report.html");
    for (const char* part : {"bleed vs calcification on synthetic brain MRI", "Per class (held-out)", "bleed+calcified",
                             "t1, t2, flair, swi_mag", "A DICOM MR study"}) {
        EXPECT_NE(html.find(part), std::string::npos) << part;
    }
    const auto m = test::read_json(d / "demo" / "eval" / "metrics.json");
    EXPECT_EQ(m["multiclass"]["classes"].size(), 3u);
    EXPECT_TRUE(m["multiclass"].contains("ci95"));
    const auto p = test::read_json(d / "demo" / "predict" / "study.json");
    EXPECT_EQ(p[0]["kind"], "sequences");
    EXPECT_EQ(p[0]["slices"].size(), 24u);
}

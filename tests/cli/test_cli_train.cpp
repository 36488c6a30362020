// Black-box tests of train / evaluate / predict / cv / models through the binary.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"
#include "support/zip_writer.hpp"

using namespace hemoscan;
using test::q;
using test::run_hemoscan;
using test::TempDir;
namespace fs = std::filesystem;

namespace {
using test::read_json;
const char* kSmall = " --model cnn-simple --size 48 --batch 8 --lr 3e-3 --threads 1 --workers 1 --augment off";
}  // namespace

TEST(CliTrain, ModelsListsRegistry) {
    auto r = run_hemoscan("models");
    ASSERT_EQ(r.exit_code, 0);
    EXPECT_NE(r.output.find("cnn-simple"), std::string::npos);
    EXPECT_NE(r.output.find("cnn-large"), std::string::npos);
    EXPECT_NE(r.output.find("(default)"), std::string::npos);
    for (const char* name : {"resnet50", "vgg19-bn", "densenet121", "efficientnet-b0"}) {
        EXPECT_NE(r.output.find(name), std::string::npos) << name;
    }
}

TEST(CliTrain, UnknownModelAndLabelMismatch) {
    TempDir d;
    test::write_blob_dataset(d / "data", 6);
    auto r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "run") + " --model nope");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("unknown model 'nope'"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "run" / "model.pt"));

    r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "run2") + kSmall + " --epochs 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // Evaluate on data whose labels differ from the model's.
    test::write_text(d / "other" / "manifest.csv", "path,subdural\n" + (d / "data" / "000.png").string() + ",1\n");
    r = run_hemoscan("evaluate --model " + q(d / "run2" / "model.pt") + " --data " + q(d / "other") + " --out " +
                     q(d / "ev"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("hemorrhage"), std::string::npos) << r.output;
    // Ensembles are for segmentation models: two classifier files are refused.
    r = run_hemoscan("evaluate --model " + q(d / "run2" / "model.pt") + " --model " + q(d / "run2" / "model.pt") +
                     " --data " + q(d / "other") + " --out " + q(d / "ev_ens"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("ensembles are for segmentation models"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "ev_ens"));
}

// Train, kill -9 in the middle, resume: the run finishes with every epoch; then evaluate and predict
// agree on the probabilities of the same images.
TEST(CliTrain, KillResumeEvaluatePredict) {
    TempDir d;
    test::write_blob_dataset(d / "data", 16);
    const int epochs = 8;
    std::string cmd = std::string("'") + HEMOSCAN_BIN + "' train --data " + q(d / "data") + " --out " + q(d / "run") +
                      kSmall + " --epochs " + std::to_string(epochs) + " > " + q(d / "train.log") + " 2>&1 & echo $!";
    auto started = test::run_command(cmd);
    const int pid = std::stoi(started.output);
    // Wait for the second checkpoint, then kill without warning.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    bool killed = false;
    while (std::chrono::steady_clock::now() < deadline) {
        std::ifstream in(d / "run" / "state.json");
        if (in) {
            try {
                auto s = nlohmann::json::parse(in);
                if (s["epoch_done"].get<int>() >= 1) {
                    ::kill(pid, SIGKILL);
                    killed = true;
                    break;
                }
            } catch (...) {
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(killed);
    test::run_command("while kill -0 " + std::to_string(pid) + " 2>/dev/null; do sleep 0.05; done");
    auto r = run_hemoscan("train --resume " + q(d / "run"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto state = read_json(d / "run" / "state.json");
    EXPECT_EQ(state["history"].size(), static_cast<size_t>(epochs));
    EXPECT_TRUE(state["finished"].get<bool>());

    r = run_hemoscan("evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(d / "data") + " --out " +
                     q(d / "eval") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto m = read_json(d / "eval" / "metrics.json");
    EXPECT_EQ(m["n"], 32);
    for (const char* k :
         {"auc", "auc_ci95", "accuracy", "sensitivity", "specificity", "precision", "f1", "threshold", "confusion"}) {
        EXPECT_TRUE(m["labels"]["hemorrhage"].contains(k)) << k;
    }
    for (const char* f : {"predictions.csv", "roc.png", "pr.png", "confusion.png"}) {
        EXPECT_TRUE(fs::exists(d / "eval" / f)) << f;
    }
    // predict on three of the images reproduces evaluate's probabilities.
    r = run_hemoscan("predict --model " + q(d / "run" / "model.pt") + " " + q(d / "data" / "000.png") + " " +
                     q(d / "data" / "001.png") + " " + q(d / "data" / "002.png") + " --out " + q(d / "pred.json") +
                     " --heatmap " + q(d / "heat") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto pj = read_json(d / "pred.json");
    ASSERT_EQ(pj.size(), 3u);
    std::ifstream csv(d / "eval" / "predictions.csv");
    std::string line;
    std::getline(csv, line);
    std::map<std::string, double> eval_prob;
    while (std::getline(csv, line)) {
        auto c1 = line.find(','), c2 = line.find(',', c1 + 1), c3 = line.find(',', c2 + 1), c4 = line.find(',', c3 + 1);
        eval_prob[fs::path(line.substr(0, c1)).filename().string()] = std::stod(line.substr(c3 + 1, c4 - c3 - 1));
    }
    for (const auto& item : pj) {
        std::string name = fs::path(item["input"].get<std::string>()).filename().string();
        double p = item["result"]["hemorrhage"]["probability"].get<double>();
        EXPECT_NEAR(p, eval_prob.at(name), 1e-5) << name;
        EXPECT_TRUE(fs::exists(item["heatmap"].get<std::string>()));
    }
}

TEST(CliTrain, PredictDicomSeriesGivesSlicesAndStudy) {
    TempDir d;
    test::write_blob_dataset(d / "data", 6);
    auto r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "run") + kSmall + " --epochs 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    DicomWriteOptions o;
    o.study_uid = new_dicom_uid();
    o.series_uid = new_dicom_uid();
    for (int k = 0; k < 3; ++k) {
        cv::Mat hu(40, 40, CV_32F, cv::Scalar(30 + 10 * k));
        o.position = {0, 0, 5.0 * k};
        o.instance_number = 3 - k;
        o.sop_uid = new_dicom_uid();
        write_dicom_ct(d / "series" / ("s" + std::to_string(k) + ".dcm"), hu, o);
    }
    r = run_hemoscan("predict --model " + q(d / "run" / "model.pt") + " " + q(d / "series") + " --out " +
                     q(d / "p.csv") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("3 slices"), std::string::npos) << r.output;
    std::ifstream in(d / "p.csv");
    std::string line;
    int slices = 0, studies = 0;
    while (std::getline(in, line)) {
        slices += line.find(",slice,") != std::string::npos;
        studies += line.find(",study,") != std::string::npos;
    }
    EXPECT_EQ(slices, 3);
    EXPECT_EQ(studies, 1);

    // The same series as a zip and as a NIfTI volume: the same study probability.
    std::vector<std::pair<std::string, std::string>> entries;
    for (int k = 0; k < 3; ++k) {
        const std::string f = "s" + std::to_string(k) + ".dcm";
        entries.emplace_back("CT/" + f, read_file(d / "series" / f));
    }
    test::write_zip(d / "series.zip", entries);
    write_nifti(d / "series.nii.gz", read_dicom_series({d / "series"}, ModalityPolicy::CtOnly).at(0));
    r = run_hemoscan("predict --model " + q(d / "run" / "model.pt") + " " + q(d / "series") + " " +
                     q(d / "series.zip") + " " + q(d / "series.nii.gz") + " --out " + q(d / "p.json") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto p = read_json(d / "p.json");
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[1]["kind"], "series");
    EXPECT_EQ(p[2]["kind"], "nifti");
    for (size_t i = 1; i < 3; ++i) {
        ASSERT_EQ(p[i]["slices"].size(), 3u) << p[i];
        EXPECT_NEAR(p[i]["result"]["hemorrhage"]["probability"].get<double>(),
                    p[0]["result"]["hemorrhage"]["probability"].get<double>(), 1e-4)
            << p[i];
    }
    r = run_hemoscan("predict --model " + q(d / "run" / "model.pt") + " " + q(d / "missing.png"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("missing.png"), std::string::npos);
}

// --pool reaches the model file: an avgmax head has twice the inputs of the default one, so the saved
// model only loads for predict when model.pt itself says avgmax. A value outside the list is refused.
TEST(CliTrain, PoolOptionIsStoredAndChecked) {
    TempDir d;
    test::write_blob_dataset(d / "data", 6);
    auto r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "run") + " --pool mean" + kSmall +
                          " --epochs 1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--pool"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "run" / "model.pt"));

    r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "run2") + " --pool avgmax" + kSmall +
                     " --epochs 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(read_json(d / "run2" / "config.json")["options"]["pool"], "avgmax");
    r = run_hemoscan("predict --model " + q(d / "run2" / "model.pt") + " " + q(d / "data" / "000.png") +
                     " --threads 1 --out " + q(d / "p.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto p = read_json(d / "p.json");
    ASSERT_EQ(p.size(), 1u);
}

// The library's log lines name option fields; the CLI shows them as its flags.
TEST(CliTrain, LogLinesNameFlags) {
    TempDir d;
    test::write_blob_dataset(d / "data", 6);
    auto r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "run") + kSmall +
                          " --epochs 1 --val-fraction 0 --patience 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("--patience 2 has no effect without a validation part"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find('`'), std::string::npos) << r.output;
}

// --init from a saved model: every fold of cv starts from it; a missing file is named, exit 1.
TEST(CliTrain, InitFromAnotherModel) {
    TempDir d;
    test::write_blob_dataset(d / "data", 6);
    auto r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "source") + kSmall + " --epochs 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path source = d / "source" / "model.pt";
    r = run_hemoscan("cv --data " + q(d / "data") + " --out " + q(d / "cv") + kSmall + " --epochs 1 --folds 2 --init " +
                     q(source));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (int k = 0; k < 2; ++k) {
        const fs::path fold = d / "cv" / ("fold_" + std::to_string(k));
        EXPECT_EQ(read_json(fold / "init.json")["file"], source.string()) << fold;
    }
    r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "run") + kSmall + " --epochs 1 --init " +
                     q(d / "missing.pt"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("missing.pt"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "run" / "model.pt"));
}

// export -> a .safetensors file that --pretrained takes back (the PyTorch round trip a user makes), with
// the fine-tuning options recorded; bad files and options get clear messages.
TEST(CliTrain, ExportThenFineTune) {
    TempDir d;
    test::write_blob_dataset(d / "data", 6);
    const std::string small = " --model cnn --size 48 --batch 8 --threads 1 --workers 1 --augment off";
    auto r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "source") + small + " --epochs 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_hemoscan("export --model " + q(d / "source" / "model.pt") + " --out " + q(d / "w.safetensors"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("hemoscan's own parameter names"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("[\"hemorrhage\"]"), std::string::npos) << r.output;
    r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "tuned") + small +
                     " --epochs 2 --pretrained " + q(d / "w.safetensors") + " --freeze-epochs 1 --backbone-lr-mult 0.5");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(read_json(d / "tuned" / "config.json")["fine_tune"],
              nlohmann::json({{"freeze_epochs", 1}, {"backbone_lr_mult", 0.5}, {"freeze_bn", false}}));
    EXPECT_EQ(read_json(d / "tuned" / "init.json")["pretrained"], (d / "w.safetensors").string());
    // --pretrained implies ImageNet statistics unless told otherwise.
    EXPECT_EQ(read_json(d / "tuned" / "config.json")["options"]["normalization"], "imagenet");
    // cv: every fold starts from the file.
    r = run_hemoscan("cv --data " + q(d / "data") + " --out " + q(d / "cv") + small + " --epochs 1 --folds 2 --pretrained " +
                     q(d / "w.safetensors"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (int k = 0; k < 2; ++k) {
        const fs::path fold = d / "cv" / ("fold_" + std::to_string(k));
        EXPECT_EQ(read_json(fold / "init.json")["pretrained"], (d / "w.safetensors").string()) << fold;
        EXPECT_EQ(read_json(fold / "config.json")["fine_tune"]["freeze_epochs"], 1) << fold;
    }

    r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "bad") + small +
                     " --epochs 2 --freeze-epochs 3");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--freeze-epochs"), std::string::npos) << r.output;
    test::write_text(d / "junk.pt", "junk");
    r = run_hemoscan("export --model " + q(d / "junk.pt") + " --out " + q(d / "junk.safetensors"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("junk.pt"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "junk.safetensors"));
}

TEST(CliTrain, CrossValidationPoolsFolds) {
    TempDir d;
    test::write_blob_dataset(d / "data", 10);
    auto r = run_hemoscan("cv --data " + q(d / "data") + " --out " + q(d / "cv") + kSmall +
                          " --epochs 2 --folds 3 --val-fraction 0.2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto m = read_json(d / "cv" / "metrics.json");
    EXPECT_EQ(m["n"], 20);  // every case predicted exactly once, out of fold
    EXPECT_EQ(m["folds"].size(), 3u);
    EXPECT_TRUE(m["summary"].contains("hemorrhage/auc"));
    auto conf = m["labels"]["hemorrhage"]["confusion"];
    EXPECT_EQ(conf[0][0].get<int>() + conf[0][1].get<int>() + conf[1][0].get<int>() + conf[1][1].get<int>(), 20);
    for (int k = 0; k < 3; ++k) EXPECT_TRUE(fs::exists(d / "cv" / ("fold_" + std::to_string(k)) / "model.pt"));
}

// cv's default, --val-fraction 0: each fold trains on all of its training folds and decides at 0.5.
TEST(CliTrain, CrossValidationWithoutInnerValidation) {
    TempDir d;
    test::write_blob_dataset(d / "data", 10);
    auto r = run_hemoscan("cv --data " + q(d / "data") + " --out " + q(d / "cv") + kSmall + " --epochs 2 --folds 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find("nan"), std::string::npos) << r.output;  // no empty validation figures shown
    EXPECT_NE(r.output.find("epoch 2/2"), std::string::npos) << r.output;
    auto m = read_json(d / "cv" / "metrics.json");
    EXPECT_EQ(m["n"], 20);
    for (int k = 0; k < 2; ++k) {
        const fs::path fold = d / "cv" / ("fold_" + std::to_string(k));
        auto config = read_json(fold / "config.json");
        EXPECT_EQ(config["train_items"], 10) << k;  // the whole training half, no inner part
        EXPECT_EQ(config["val_items"], 0) << k;
        EXPECT_DOUBLE_EQ(m["folds"][k]["thresholds"][0].get<double>(), 0.5) << k;
        EXPECT_EQ(read_json(fold / "metrics.json")["best_epoch"], 1) << k;
    }
    r = run_hemoscan("cv --data " + q(d / "data") + " --out " + q(d / "cv2") + kSmall + " --val-fraction -0.2");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--val-fraction"), std::string::npos) << r.output;
}

// The README's main command on a tiny cohort: every stage runs and the report holds its sections.
TEST(CliTrain, DemoWritesReport) {
    TempDir d;
    auto r = run_hemoscan("demo --out " + q(d / "demo") +
                          " --train-studies 6 --test-studies 3 --slices 4 --size 48 --epochs 1 --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path report = d / "demo" / "report.html";
    EXPECT_NE(r.output.find("report.html"), std::string::npos);
    ASSERT_TRUE(fs::exists(report));
    std::ifstream in(report);
    std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const char* part :
         {"Per-study results", "Slice-level metrics", "Grad-CAM", "data:image/png;base64,", "study_0000"}) {
        EXPECT_NE(html.find(part), std::string::npos) << part;
    }
    EXPECT_EQ(html.find("missing figure"), std::string::npos);
    for (const char* f : {"run/model.pt", "eval/metrics.json", "eval/study_metrics.json", "predict/series.json"}) {
        EXPECT_TRUE(fs::exists(d / "demo" / f)) << f;
    }
    // A second demo into the same folder is refused instead of mixing runs, unless asked to replace it;
    // then only the demo's own files go.
    r = run_hemoscan("demo --out " + q(d / "demo") + " --train-studies 6 --test-studies 3 --slices 4 --epochs 1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    test::write_text(d / "demo" / "mine.txt", "keep");
    r = run_hemoscan("demo --out " + q(d / "demo") +
                     " --train-studies 6 --test-studies 3 --slices 4 --size 48 --epochs 1 --threads 1 --overwrite");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(d / "demo" / "mine.txt"));
    EXPECT_TRUE(fs::exists(report));
}

// The study task through the binary: train (both stages into one model file), evaluate (both levels),
// predict on a series (the study model's outputs, named as such), cv; options it does not take.
TEST(CliTrain, StudyTaskTrainEvaluatePredictCv) {
    TempDir d;
    auto r = run_hemoscan("synth --out " + q(d / "cohort") + " --studies 8 --seed 3 --size 48 --slices 5 --format rsna");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path data = d / "cohort" / "rsna";
    const std::string study = std::string(kSmall) + " --epochs 1 --stage1-folds 2 --study-epochs 2 --study-hidden 8";
    r = run_hemoscan("train --task study --data " + q(data) + " --out " + q(d / "run") + study);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("study level, stage 1 + study model"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("RSNA weighted log loss"), std::string::npos) << r.output;
    EXPECT_EQ(read_json(d / "run" / "config.json")["options"]["study_hidden"], 8);

    r = run_hemoscan("evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(data) + " --out " + q(d / "ev") +
                     " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto m = read_json(d / "ev" / "metrics.json");
    EXPECT_EQ(m["study"]["n"], 8);
    EXPECT_EQ(m["slice"]["n"], 40);
    EXPECT_TRUE(m["stage1"]["study"].contains("labels"));

    r = run_hemoscan("predict --model " + q(d / "run" / "model.pt") + " " + q(data / "stage_2_train_images") +
                     " --out " + q(d / "p.json") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("slices: study model"), std::string::npos) << r.output;
    const auto p = read_json(d / "p.json");
    ASSERT_EQ(p.size(), 8u);
    EXPECT_EQ(p[0]["study_rule"], "study model");
    EXPECT_EQ(p[0]["slices"].size(), 5u);

    r = run_hemoscan("cv --task study --folds 2 --data " + q(data) + " --out " + q(d / "cv") + study);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("pooled out-of-fold (8 studies)"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::exists(d / "cv" / "study_predictions.csv"));

    r = run_hemoscan("cv --task segment --folds 2 --data " + q(data) + " --out " + q(d / "cv2") + kSmall);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = run_hemoscan("train --resume " + q(d / "run"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--task study"), std::string::npos) << r.output;
    test::write_blob_dataset(d / "blobs", 4);
    r = run_hemoscan("train --task study --data " + q(d / "blobs") + " --out " + q(d / "run3") + study);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("a manifest with a \"slice\" column"), std::string::npos) << r.output;
}

// Issue 29, item 3: softmax training, evaluation and prediction end to end with three and four class folders
// (the MRI task's bleed / calcified / bleed+calcified, then with normal): per-class precision, recall and F1,
// macro figures, the confusion matrix (counts and plot), and predictions over the classes that sum to one.
TEST(CliTrain, ThreeAndFourClassesEndToEnd) {
    for (const bool with_normal : {false, true}) {
        SCOPED_TRACE(with_normal ? "four classes" : "three classes");
        TempDir d;
        test::write_bleed_calcified_folders(d / "data", 10, with_normal, 48, 7);
        auto r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "run") +
                              " --model cnn --size 48 --batch 8 --lr 3e-3 --threads 1 --workers 1"
                              " --augment off --epochs 30 --seed 2");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        r = run_hemoscan("evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(d / "data") + " --out " +
                         q(d / "eval") + " --threads 1");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        const auto m = read_json(d / "eval" / "metrics.json");
        ASSERT_TRUE(m.contains("multiclass")) << m.dump(2);
        const auto& mc = m["multiclass"];
        std::vector<std::string> classes = {"bleed", "bleed+calcified", "calcified"};  // folder names, sorted
        if (with_normal) classes.push_back("normal");
        ASSERT_EQ(mc["classes"].size(), classes.size()) << mc.dump(2);
        long total = 0;
        for (const auto& c : classes) {
            for (const char* k : {"precision", "recall", "f1", "support"}) {
                EXPECT_TRUE(mc["classes"][c].contains(k)) << c << " " << k;
            }
            EXPECT_EQ(mc["classes"][c]["support"], 10) << c;
        }
        for (const auto& row : mc["confusion"]) {
            ASSERT_EQ(row.size(), classes.size());
            for (const auto& v : row) total += v.get<long>();
        }
        EXPECT_EQ(total, static_cast<long>(10 * classes.size()));
        for (const char* k : {"accuracy", "macro_f1", "macro_precision", "macro_recall"}) {
            EXPECT_TRUE(mc.contains(k)) << k;
        }
        // In-sample on a task a small CNN separates: well above chance (1/3, 1/4).
        EXPECT_GE(mc["accuracy"].get<double>(), 0.7) << mc.dump(2);
        EXPECT_TRUE(fs::exists(d / "eval" / "confusion.png"));
        const fs::path calcified = *fs::directory_iterator(d / "data" / "calcified");
        r = run_hemoscan("predict --model " + q(d / "run" / "model.pt") + " " + q(calcified) + " --out " +
                         q(d / "pred.json") + " --threads 1");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        const auto pj = read_json(d / "pred.json");
        ASSERT_EQ(pj.size(), 1u);
        const auto& result = pj[0]["result"];
        double sum = 0;
        int decided = 0;
        for (const auto& c : classes) {
            ASSERT_TRUE(result.contains(c)) << result.dump(2);
            sum += result[c]["probability"].get<double>();
            decided += result[c]["decision"].get<bool>() ? 1 : 0;
        }
        EXPECT_NEAR(sum, 1.0, 1e-5);
        EXPECT_EQ(decided, 1) << "argmax: exactly one class";
    }
}

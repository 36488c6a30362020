// Sharded inference through the binary (issue 31): `predict` over many inputs and `evaluate` of a
// segmenter and of a study model with `--nproc-per-node 2` (torchrun's variables, c10d over Gloo) give
// what one process gives, in the same order, and only rank 0 writes the tables.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

namespace {

namespace fs = std::filesystem;
using hemoscan::test::q;
using hemoscan::test::run_hemoscan;
using hemoscan::test::TempDir;
using hemoscan::test::expect_csv_near;

const fs::path kInferModels = fs::path(HEMOSCAN_SOURCE_DIR) / "tests" / "golden";  // small fixed models

std::set<std::string> infer_files(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(dir)) names.insert(fs::relative(e.path(), dir).string());
    return names;
}

// Equal JSON, numbers within `tol`; `a_dir`/`b_dir` in strings are the two runs' output folders.
void expect_json_near(const nlohmann::json& a, const nlohmann::json& b, double tol, const std::string& where,
                      const std::string& a_dir = "", const std::string& b_dir = "") {
    if (a.is_object()) {
        ASSERT_TRUE(b.is_object()) << where;
        EXPECT_EQ(a.size(), b.size()) << where;
        for (const auto& [k, v] : a.items()) {
            ASSERT_TRUE(b.contains(k)) << where << "." << k;
            expect_json_near(v, b[k], tol, where + "." + k, a_dir, b_dir);
        }
    } else if (a.is_array()) {
        ASSERT_TRUE(b.is_array()) << where;
        ASSERT_EQ(a.size(), b.size()) << where;
        for (size_t i = 0; i < a.size(); ++i) {
            expect_json_near(a[i], b[i], tol, where + "[" + std::to_string(i) + "]", a_dir, b_dir);
        }
    } else if (a.is_number_float()) {
        ASSERT_TRUE(b.is_number()) << where;
        EXPECT_NEAR(a.get<double>(), b.get<double>(), tol) << where;
    } else if (a.is_string() && !a_dir.empty()) {
        std::string s = a.get<std::string>();
        if (s.rfind(a_dir, 0) == 0) s = b_dir + s.substr(a_dir.size());
        EXPECT_EQ(s, b.get<std::string>()) << where;
    } else {
        EXPECT_EQ(a, b) << where;
    }
}

size_t count_of(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

}  // namespace

// 8 studies from 6 inputs: a folder of 3 series is split between the ranks (blocks of 4), and a series
// given twice gets its DICOM folder "_2" however the studies fall to the ranks.
TEST(CliDistInfer, PredictShardsTheStudiesOfAllInputsAndRankZeroWritesTheTable) {
    TempDir d;
    auto r = run_hemoscan("synth --out " + q(d / "syn") +
                          " --studies 3 --seed 7 --size 64 --slices 3 --p-bleed 0.7 --format dicom --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (int k = 0; k < 3; ++k) {
        cv::imwrite((d / ("img" + std::to_string(k) + ".png")).string(),
                    cv::Mat(64, 64, CV_8U, cv::Scalar(60 + 40 * k)));
    }
    const fs::path dicom = d / "syn" / "dicom";
    const std::string inputs = q(dicom / "study_0000") + " " + q(d / "img0.png") + " " + q(dicom) + " " +
                               q(d / "img1.png") + " " + q(dicom / "study_0000") + " " + q(d / "img2.png");
    auto run = [&](const std::string& name, const std::string& extra) {
        return run_hemoscan("predict --model " + q(kInferModels / "cls.pt") + " " + inputs + " --out " +
                            q(d / name / "p.json") + " --heatmap " + q(d / name / "heat") + " --dicom-out " +
                            q(d / name / "dcm") + " --threads 1 --batch 2 --dist-timeout 60" + extra);
    };
    auto one = run("one", "");
    ASSERT_EQ(one.exit_code, 0) << one.output;
    auto two = run("two", " --nproc-per-node 2");
    ASSERT_EQ(two.exit_code, 0) << two.output;
    EXPECT_NE(two.output.find("starting 2 processes"), std::string::npos) << two.output;

    const auto a = hemoscan::test::read_json(d / "one" / "p.json");
    const auto b = hemoscan::test::read_json(d / "two" / "p.json");
    ASSERT_EQ(a.size(), 8u);
    EXPECT_EQ(a[2]["kind"], "series");
    expect_json_near(a, b, 1e-6, "p.json", (d / "one").string(), (d / "two").string());
    // Each rank wrote its own studies' overlays and DICOM objects: together the one process's files.
    EXPECT_EQ(infer_files(d / "two"), infer_files(d / "one"));
    EXPECT_TRUE(fs::is_directory(d / "two" / "dcm" / "study_0000_2"));
    EXPECT_TRUE(fs::is_directory(d / "two" / "dcm" / "dicom_s3"));
    // Rank 0 alone prints the results: every input's line once.
    EXPECT_EQ(count_of(two.output, (d / "img2.png").string() + "  "), 1u) << two.output;
    EXPECT_EQ(count_of(two.output, (d / "img2.png").string() + "  "),
              count_of(one.output, (d / "img2.png").string() + "  "));
}

TEST(CliDistInfer, SegmenterEvaluationShardsTheCasesAndEqualsOneProcess) {
    TempDir d;
    auto r = run_hemoscan("synth --out " + q(d / "syn") +
                          " --studies 5 --seed 4 --size 64 --slices 4 --p-bleed 0.8 --format nnunet --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string common = "evaluate --model " + q(kInferModels / "seg.pt") + " --data " + q(d / "syn" / "nnunet") +
                               " --threads 1 --dist-timeout 60 --out ";
    std::string group_output;
    ASSERT_NO_FATAL_FAILURE(hemoscan::test::run_alone_and_as_group(common, d / "one", d / "two", &group_output));
    EXPECT_EQ(count_of(group_output, "Dice mean of classes"), 1u) << group_output;  // rank 0 reports
    EXPECT_EQ(infer_files(d / "two"), infer_files(d / "one"));
    // Each case is segmented as one process segments it: the same figures, cases in input order.
    EXPECT_EQ(hemoscan::read_file(d / "two" / "cases.csv"), hemoscan::read_file(d / "one" / "cases.csv"));
    const auto a = hemoscan::test::read_json(d / "one" / "metrics.json");
    const auto b = hemoscan::test::read_json(d / "two" / "metrics.json");
    EXPECT_EQ(a["cases"].size(), 5u);
    expect_json_near(a, b, 1e-9, "metrics.json");
}

TEST(CliDistInfer, StudyModelEvaluationShardsTheStudiesAndEqualsOneProcess) {
    TempDir d;
    auto r =
        run_hemoscan("synth --out " + q(d / "cohort") + " --studies 6 --seed 3 --size 32 --slices 4 --format rsna");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path data = d / "cohort" / "rsna";
    r = run_hemoscan("train --task study --data " + q(data) + " --out " + q(d / "run") +
                     " --model cnn-simple --size 32 --batch 8 --lr 3e-3 --threads 1 --workers 1 --augment off"
                     " --epochs 1 --stage1-folds 2 --study-epochs 2 --study-hidden 8");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string common = "evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(data) +
                               " --threads 1 --workers 1 --batch 4 --dist-timeout 60 --out ";
    ASSERT_NO_FATAL_FAILURE(hemoscan::test::run_alone_and_as_group(common, d / "one", d / "two"));
    EXPECT_EQ(infer_files(d / "two"), infer_files(d / "one"));
    // 24 slices (blocks of 12 per rank) and 6 studies, in input order; probabilities up to float rounding.
    expect_csv_near(d / "one" / "predictions.csv", d / "two" / "predictions.csv", 25, 1e-6);
    expect_csv_near(d / "one" / "study_predictions.csv", d / "two" / "study_predictions.csv", 7, 1e-6);
    const auto a = hemoscan::test::read_json(d / "one" / "metrics.json");
    const auto b = hemoscan::test::read_json(d / "two" / "metrics.json");
    EXPECT_EQ(a["study"]["n"], 6);
    expect_json_near(a, b, 1e-6, "metrics.json");
}

// The study task (issue 26): two-level tables and metrics, the study model learning what neighbouring
// slices show, `train --task study` end to end (one model file, evaluate, the analysis pipeline) and its
// cross-validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/evaluate/study.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/metrics/classification.hpp"
#include "hemoscan/synth/synth.hpp"
#include "hemoscan/train/study.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"
#include "train/small_options.hpp"
#include "train/study_detail.hpp"

using namespace hemoscan;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

// An ordered data set in memory (no files: stage-1 outputs are given): studies of `slices` slices,
// every other one with a run of 3-6 consecutive positive slices. Stage 1's outputs are noisy log-odds
// (-1.5 + 2.5 y + N(0, 1.3)); a bleed spans neighbouring slices, which the study model can read.
Dataset noisy_studies(int studies, int slices, unsigned seed, StudyProbs& stage1, const std::string& tag) {
    Dataset ds;
    ds.form = DatasetForm::Manifest;
    ds.label_names = {"any"};
    ds.ordered = true;
    ds.root = "/nonexistent";
    std::mt19937 rng(seed);
    std::normal_distribution<double> noise(0.0, 1.3);
    std::vector<size_t> items;
    std::vector<std::vector<double>> probs;
    for (int s = 0; s < studies; ++s) {
        const int len = std::min(slices - 1, 3 + static_cast<int>(rng() % 4));
        const int start = static_cast<int>(rng() % static_cast<unsigned>(slices - len + 1));
        for (int t = 0; t < slices; ++t) {
            DatasetItem item;
            item.id = tag + std::to_string(s) + "_" + std::to_string(t);
            item.path = item.id + ".png";
            item.patient = tag + "P" + std::to_string(s);
            item.study = tag + "S" + std::to_string(s);
            item.slice = t;
            const bool y = s % 2 == 0 && t >= start && t < start + len;
            item.labels = {y ? 1.f : 0.f};
            items.push_back(ds.items.size());
            probs.push_back({1.0 / (1.0 + std::exp(-(-1.5 + 2.5 * y + noise(rng))))});
            ds.items.push_back(item);
        }
    }
    stage1 = group_studies(ds, items, probs);
    stage1.study_probs = max_over_slices(stage1.probs);
    return ds;
}

double auc_of(const PredictionTable& t) {
    std::vector<double> s;
    std::vector<int> y;
    for (size_t r = 0; r < t.size(); ++r) {
        s.push_back(t.probs[r][0]);
        y.push_back(t.truths[r][0]);
    }
    return roc_auc(s, y);
}

double log_loss_of(const PredictionTable& t) { return rsna_weighted_log_loss(t.probs, t.truths, t.label_names); }

// A tiny RSNA-layout cohort: 12 studies of 6 slices at 48 px, most with a bleed.
fs::path rsna_cohort(const fs::path& dir) {
    SynthOptions s;
    s.seed = 21;
    s.studies = 12;
    s.size = 48;
    s.slices = 6;
    s.p_bleed = 0.7;
    write_cohort(s, dir, kSynthRsna);
    return dir / "rsna";
}

TrainOptions study_options(const fs::path& data, const fs::path& out) {
    TrainOptions o = test::small_options(data, out);
    o.task = "study";
    o.epochs = 2;
    o.stage1_folds = 2;
    o.study_epochs = 3;
    o.study_hidden = 8;
    return o;
}

}  // namespace

// Study truth is "any slice positive"; the study probability is what the caller gives; the RSNA log
// loss comes from the slices; cv decisions follow each row's fold.
TEST(StudyEval, TablesAndTwoLevelMetrics) {
    StudyProbs p;
    Dataset ds = noisy_studies(4, 5, 3, p, "a");
    ASSERT_EQ(p.studies.size(), 4u);
    ASSERT_EQ(p.studies[1].size(), 5u);
    const StudyTables t = study_tables(ds, p);
    EXPECT_EQ(t.slices.size(), 20u);
    ASSERT_EQ(t.studies.size(), 4u);
    EXPECT_EQ(t.studies.truths[0][0], 1);  // studies 0 and 2 have a run of positive slices
    EXPECT_EQ(t.studies.truths[1][0], 0);
    EXPECT_EQ(t.studies.paths[2], "aS2");
    EXPECT_EQ(t.studies.probs[3][0], *std::max_element(t.slices.probs.begin() + 15, t.slices.probs.end())->begin());
    const nlohmann::json m = two_level_metrics(t, {0.5}, 0);
    EXPECT_EQ(m["slice"]["n"], 20);
    EXPECT_EQ(m["study"]["n"], 4);
    EXPECT_EQ(m["n_studies"], 4);
    EXPECT_NEAR(m["rsna_log_loss"].get<double>(), log_loss_of(t.slices), 1e-12);
    EXPECT_TRUE(m["study"]["labels"]["any"]["auc"].is_number());

    PredictionTable folded = t.studies;
    folded.folds = {0, 1, 0, 1};
    decide_by_fold(folded, {{0.0}, {1.1}});  // fold 0 says yes to everything, fold 1 no
    EXPECT_EQ(folded.decisions, (std::vector<std::vector<int>>{{1}, {0}, {1}, {0}}));
    nlohmann::json fm = compute_metrics(folded, {0.5}, 0);
    apply_case_decisions(fm, folded);
    EXPECT_EQ(fm["labels"]["any"]["sensitivity"], 1.0);  // both positive studies are in fold 0
    EXPECT_EQ(fm["labels"]["any"]["specificity"], 1.0);  // both negatives in fold 1
    PredictionTable unfolded = t.slices;
    EXPECT_THROW(decide_by_fold(unfolded, {{0.5}}), UsageError);  // rows without folds
}

// Stage 1 sees each slice alone and its outputs are noisy; a bleed spans neighbouring slices. The study
// model, trained on one set of studies, must beat stage 1 on new studies at both levels: higher slice
// and study AUC, lower log loss (the claim of the RSNA 2019 winners' second stage, on its mechanism).
TEST(StudyStage2, LearnsWhatNeighbouringSlicesShow) {
    TempDir d;
    StudyProbs train, val, test;
    const Dataset ds_train = noisy_studies(160, 20, 1, train, "t");
    Dataset all = ds_train;
    const Dataset ds_val = noisy_studies(40, 20, 2, val, "v");
    const Dataset ds_test = noisy_studies(100, 20, 3, test, "x");
    // One data set holding all three (item indices shifted), as the trainer expects.
    auto append = [&all](const Dataset& part, StudyProbs& p) {
        const size_t offset = all.items.size();
        all.items.insert(all.items.end(), part.items.begin(), part.items.end());
        for (auto& s : p.studies) {
            for (auto& i : s) i += offset;
        }
    };
    append(ds_val, val);
    append(ds_test, test);
    TrainOptions o = test::small_options(d / "none", d / "run");
    o.study_epochs = 30;
    o.study_hidden = 16;
    o.seed = 3;
    const train_detail::Stage2 s2 = train_detail::train_stage2(o, all, train, val, d / "stage2");
    EXPECT_TRUE(fs::exists(d / "stage2" / "log.csv"));
    EXPECT_TRUE(fs::exists(d / "stage2" / "curves.png"));
    EXPECT_FALSE(fs::exists(d / "stage2" / "best.pt"));  // a finished run keeps no checkpoints
    ASSERT_EQ(s2.thresholds.size(), 1u);

    const StudyTables before = study_tables(all, test);
    const StudyTables after = study_tables(all, train_detail::stage2_outputs(*s2.model, test));
    const double auc1 = auc_of(before.slices), auc2 = auc_of(after.slices);
    const double study1 = auc_of(before.studies), study2 = auc_of(after.studies);
    const double loss1 = log_loss_of(before.slices), loss2 = log_loss_of(after.slices);
    std::printf("stage 1 -> stage 2: slice AUC %.4f -> %.4f, study AUC %.4f -> %.4f, log loss %.4f -> %.4f\n", auc1,
                auc2, study1, study2, loss1, loss2);
    EXPECT_GT(auc2, auc1 + 0.02) << auc1 << " -> " << auc2;
    EXPECT_GT(study2, study1 + 0.02) << study1 << " -> " << study2;
    EXPECT_LT(loss2, loss1 - 0.05) << loss1 << " -> " << loss2;
}

// train --task study end to end: stage-1 out-of-fold outputs, the final slice model, the study model,
// one model.pt; evaluate reports both levels and stage 1 alone; the analysis pipeline (predict, server)
// gives the study model's outputs.
TEST(StudyTrain, OneModelFileThroughEvaluateAndThePipeline) {
    TempDir d;
    const fs::path data = rsna_cohort(d / "cohort");
    const TrainOptions o = study_options(data, d / "run");
    const TrainResult r = train_study(o);
    for (const char* f : {"model.pt", "metrics.json", "predictions.csv", "study_predictions.csv", "config.json",
                          "split.csv", "stage1/model.pt", "stage1_oof/metrics.json", "stage1_oof/fold_1/model.pt",
                          "stage2/log.csv"}) {
        EXPECT_TRUE(fs::exists(d / "run" / f)) << f;
    }
    const nlohmann::json m = test::read_json(d / "run" / "metrics.json");
    for (const char* k : {"slice", "study", "rsna_log_loss", "stage1", "best_epoch"}) EXPECT_TRUE(m.contains(k)) << k;
    EXPECT_TRUE(m["slice"]["labels"].contains("subdural"));
    EXPECT_EQ(test::read_json(d / "run" / "config.json")["task"], "study");
    // Studies of the validation part, whole: slices = 6 x studies.
    EXPECT_EQ(m["slice"]["n"].get<int>(), 6 * m["study"]["n"].get<int>());

    Predictor predictor(r.model_path, 1);
    ASSERT_TRUE(predictor.has_study_model());
    EXPECT_EQ(study_rule(predictor), "study model");
    EXPECT_EQ(predictor.thresholds().size(), 6u);
    EXPECT_EQ(predictor.meta()["study"]["study_thresholds"].get<std::vector<double>>(), predictor.study_thresholds());
    EXPECT_EQ(predictor.slice_thresholds(), Predictor(d / "run" / "stage1" / "model.pt", 1).thresholds());

    const Dataset ds = open_dataset(data);
    const nlohmann::json em = evaluate_dataset(predictor, ds, d / "eval");
    EXPECT_EQ(em["study"]["n"], 12);
    EXPECT_EQ(em["slice"]["n"], 72);
    // Stage 1 alone, as evaluated within the study file, is the slice model evaluated by itself.
    Predictor slice_model(d / "run" / "stage1" / "model.pt", 1);
    const nlohmann::json plain = evaluate_dataset(slice_model, ds, d / "eval_plain");
    EXPECT_NEAR(em["stage1"]["slice"]["labels"]["any"]["auc"].get<double>(), plain["labels"]["any"]["auc"].get<double>(),
                1e-9);
    EXPECT_EQ(read_csv(d / "eval" / "study_predictions.csv").rows.size(), 12u);

    // The pipeline: the slice model's outputs of the series, then the study model over them.
    const std::vector<StudyInput> inputs = read_study_inputs(data / "stage_2_train_images", ModalityPolicy::CtOnly);
    ASSERT_EQ(inputs.size(), 12u);
    const StudyResult sr = analyze_study(inputs.front(), &predictor, nullptr);
    ASSERT_EQ(sr.slices.size(), 6u);
    const std::vector<Prediction> stage1 = predictor.predict_samples(sr.samples);
    const StudyPrediction expected = predictor.predict_study(stage1);
    double moved = 0;
    for (size_t k = 0; k < 6; ++k) {
        for (size_t l = 0; l < 6; ++l) {
            EXPECT_NEAR(sr.slices[k].probabilities[l], expected.slices[k].probabilities[l], 1e-6);
            moved = std::max(moved, std::abs(sr.slices[k].probabilities[l] - stage1[k].probabilities[l]));
        }
    }
    EXPECT_GT(moved, 1e-4);  // stage 2 ran: its outputs are not stage 1's
    for (size_t l = 0; l < 6; ++l) {
        double top = 0;
        for (const auto& s : sr.slices) top = std::max(top, s.probabilities[l]);
        EXPECT_NEAR(sr.study.probabilities[l], top, 1e-6);  // the study is its highest slice
        // Studies are decided at the study thresholds, slices at the slice thresholds.
        EXPECT_EQ(sr.study.decisions[l], sr.study.probabilities[l] >= predictor.study_thresholds()[l] ? 1 : 0);
        EXPECT_EQ(sr.slices[0].decisions[l], sr.slices[0].probabilities[l] >= predictor.thresholds()[l] ? 1 : 0);
    }
    // A plain slice model has no study model.
    EXPECT_THROW(slice_model.predict_study(stage1), UsageError);
    EXPECT_EQ(study_rule(slice_model), "highest slice");

    // A given stage 1: no slice model is trained, the study model is.
    TrainOptions given = study_options(data, d / "run2");
    given.stage1 = (d / "run" / "stage1" / "model.pt").string();
    train_study(given);
    EXPECT_TRUE(fs::exists(d / "run2" / "model.pt"));
    EXPECT_FALSE(fs::exists(d / "run2" / "stage1_oof"));
    EXPECT_EQ(test::read_json(d / "run2" / "metrics.json")["study"]["n"], m["study"]["n"]);
    test::expect_usage_error([&] { train_study(given); }, {"run2", "already holds a run"});
}

TEST(StudyTrain, RefusesUnorderedDataAndBadOptions) {
    TempDir d;
    test::write_blob_dataset(d / "blobs", 6);
    test::expect_input_error([&] { train_study(study_options(d / "blobs", d / "run")); }, {"blobs", "slice"});
    TrainOptions o = study_options(d / "blobs", d / "cv");
    o.folds = 2;
    test::expect_input_error([&] { cross_validate_study(o); }, {"blobs", "study order"});
    o = study_options(d / "blobs", d / "run");
    o.stage1_folds = 1;
    test::expect_usage_error([&] { train_study(o); }, {"stage1_folds"});
    o.stage1_folds = 2;
    o.study_epochs = 0;
    test::expect_usage_error([&] { train_study(o); }, {"study_epochs"});
    EXPECT_FALSE(fs::exists(d / "run" / "config.json"));
}

// cv --task study: stage 1 cross-validated once, a study model per fold on the other folds' out-of-fold
// outputs; both levels pooled, stage 1 alone beside them, decisions by each fold's thresholds.
TEST(StudyCv, PoolsBothLevelsOverTheFolds) {
    TempDir d;
    const fs::path data = rsna_cohort(d / "cohort");
    TrainOptions o = study_options(data, d / "cv");
    o.folds = 2;
    const nlohmann::json m = cross_validate_study(o);
    EXPECT_EQ(m["slice"]["n"], 72);
    EXPECT_EQ(m["study"]["n"], 12);
    EXPECT_EQ(m["stage1"]["study"]["n"], 12);
    EXPECT_EQ(m["folds"].size(), 2u);
    EXPECT_TRUE(m["rsna_log_loss"].is_number());
    EXPECT_TRUE(m["stage1"]["rsna_log_loss"].is_number());
    EXPECT_EQ(m["study"]["labels"]["any"]["threshold"].size(), 2u);  // one per fold
    for (const char* f : {"metrics.json", "predictions.csv", "study_predictions.csv", "config.json", "stage1/metrics.json",
                          "stage1/fold_0/model.pt", "stage2/fold_1/log.csv"}) {
        EXPECT_TRUE(fs::exists(d / "cv" / f)) << f;
    }
    const CsvTable studies = read_csv(d / "cv" / "study_predictions.csv");
    EXPECT_EQ(studies.rows.size(), 12u);
    EXPECT_EQ(studies.header.front(), "study");
    EXPECT_EQ(read_csv(d / "cv" / "predictions.csv").rows.size(), 72u);
    test::expect_usage_error([&] { cross_validate_study(o); }, {"already holds a cross-validation"});
}

#include <gtest/gtest.h>
#include <spdlog/fmt/fmt.h>

#include <fstream>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <sstream>

#include "hemoscan/error.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/evaluate/classification.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/preprocess/volume.hpp"
#include "hemoscan/train/trainer.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"
#include "train/small_options.hpp"

using namespace hemoscan;
using hemoscan::test::small_options;

namespace {

size_t count_lines(const fs::path& p) {
    std::ifstream in(p);
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) ++n;
    return n;
}

}  // namespace

// A trivially separable task (a bright blob or not) must be learnt to a high validation AUC.
TEST(Trainer, LearnsSeparableTask) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 24);
    auto o = small_options(d / "data", d / "run");
    TrainResult r = train_classifier(o);
    ASSERT_TRUE(r.metrics.contains("macro_auc"));
    EXPECT_GT(r.metrics["macro_auc"].get<double>(), 0.95) << r.metrics.dump(2);
    EXPECT_EQ(r.epochs_run, 12);
    for (const char* f : {"config.json", "model.pt", "log.csv", "metrics.json", "predictions.csv", "split.csv",
                          "curves.png", "roc.png", "confusion.png"}) {
        EXPECT_TRUE(fs::exists(d / "run" / f)) << f;
    }
    EXPECT_EQ(count_lines(d / "run" / "log.csv"), 13u);  // header + one row per epoch
    EXPECT_FALSE(fs::exists(d / "run" / "best.pt"));     // checkpoints removed once finished
    // The model file describes itself: labels, preprocessing and the validation threshold.
    Predictor p(d / "run" / "model.pt", 1);
    EXPECT_EQ(p.labels(), std::vector<std::string>{"hemorrhage"});
    EXPECT_EQ(p.preprocess_options().resize.width, 48);
    ASSERT_EQ(p.thresholds().size(), 1u);
    EXPECT_DOUBLE_EQ(p.thresholds()[0], r.metrics["labels"]["hemorrhage"]["threshold"].get<double>());
    // A second train into the same folder is refused rather than overwriting the run.
    EXPECT_THROW(train_classifier(o), UsageError);
}

// An interrupted run resumed from its checkpoint ends with the same number of epochs and the same
// history for the epochs before the interruption.
TEST(Trainer, ResumeAfterInterruption) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 12);
    auto o = small_options(d / "data", d / "run");
    o.epochs = 5;
    TrainCallbacks cb;
    cb.epoch_end = [](int epoch, const nlohmann::json&) {
        if (epoch == 1) throw std::runtime_error("simulated crash after epoch 2");
    };
    EXPECT_THROW(train_classifier(o, cb), std::runtime_error);
    EXPECT_FALSE(fs::exists(d / "run" / "model.pt"));
    auto state = nlohmann::json::parse(read_file(d / "run" / "state.json"));
    EXPECT_EQ(state["epoch_done"], 1);
    auto before = state["history"];

    TrainOptions resumed = load_run_options(d / "run");
    TrainResult r = train_classifier(resumed, {}, true);
    EXPECT_EQ(r.epochs_run, 5);
    EXPECT_EQ(count_lines(d / "run" / "log.csv"), 6u);
    auto after = nlohmann::json::parse(read_file(d / "run" / "state.json"));
    EXPECT_TRUE(after["finished"].get<bool>());
    EXPECT_EQ(after["history"][0]["train_loss"], before[0]["train_loss"]);
    EXPECT_EQ(after["history"][1]["train_loss"], before[1]["train_loss"]);
    EXPECT_TRUE(fs::exists(d / "run" / "model.pt"));
    // Resuming a finished run is an error, not a silent retrain.
    EXPECT_THROW(train_classifier(resumed, {}, true), UsageError);
}

// Weight averaging (--ema): the averaged weights are what is validated and saved, and they are part
// of the checkpoint, so an interrupted run resumes to the same model as an uninterrupted one.
TEST(Trainer, WeightAverageResumesToTheSameModel) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 12);
    auto o = small_options(d / "data", d / "whole");
    o.epochs = 4;
    o.ema_epochs = 1.0;
    TrainResult whole = train_classifier(o);

    o.out = (d / "cut").string();
    TrainCallbacks cb;
    cb.epoch_end = [](int epoch, const nlohmann::json&) {
        if (epoch == 1) throw std::runtime_error("simulated crash after epoch 2");
    };
    EXPECT_THROW(train_classifier(o, cb), std::runtime_error);
    auto state = nlohmann::json::parse(read_file(d / "cut" / "state.json"));
    ASSERT_FALSE(state["ema"].get<std::string>().empty());
    EXPECT_TRUE(fs::exists(d / "cut" / state["ema"].get<std::string>()));
    TrainResult cut = train_classifier(load_run_options(d / "cut"), {}, true);
    EXPECT_EQ(cut.epochs_run, 4);
    EXPECT_EQ(cut.best_epoch, whole.best_epoch);
    ASSERT_EQ(cut.val_probs.size(), whole.val_probs.size());
    for (size_t i = 0; i < whole.val_probs.size(); ++i) EXPECT_NEAR(cut.val_probs[i][0], whole.val_probs[i][0], 1e-6);

    // The averaged model is not the last training step's model.
    auto plain = small_options(d / "data", d / "plain");
    plain.epochs = 4;
    TrainResult p = train_classifier(plain);
    double diff = 0;
    for (size_t i = 0; i < p.val_probs.size(); ++i) diff += std::abs(p.val_probs[i][0] - whole.val_probs[i][0]);
    EXPECT_GT(diff, 1e-4);
}

// --val-fraction 0 (a final model on all the data): every item is trained on, the last epoch is kept
// and the threshold is the class-weighted loss's balanced point, 0.5.
TEST(Trainer, NoValidationPartTrainsOnAllAndKeepsTheLastEpoch) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 12);
    auto o = small_options(d / "data", d / "run");
    o.val_fraction = 0;
    o.epochs = 6;
    TrainResult r = train_classifier(o);
    EXPECT_EQ(r.epochs_run, 6);
    EXPECT_EQ(r.best_epoch, 5);
    EXPECT_TRUE(r.val_indices.empty());
    auto config = nlohmann::json::parse(read_file(d / "run" / "config.json"));
    EXPECT_EQ(config["train_items"], 24);
    EXPECT_EQ(config["val_items"], 0);
    EXPECT_EQ(r.metrics["split"], "none (all items trained)");
    EXPECT_FALSE(fs::exists(d / "run" / "predictions.csv"));  // nothing was held out
    Predictor p(d / "run" / "model.pt", 1);
    ASSERT_EQ(p.thresholds().size(), 1u);
    EXPECT_DOUBLE_EQ(p.thresholds()[0], 0.5);
    // It did learn: the blobs it was trained on are ranked apart.
    Dataset ds = open_dataset(d / "data");
    auto m = evaluate_dataset(p, ds, d / "eval");
    EXPECT_GT(m["labels"]["hemorrhage"]["auc"].get<double>(), 0.95) << m.dump(2);

    for (double bad : {-0.1, 1.0}) {
        auto b = small_options(d / "data", d / ("bad" + std::to_string(bad)));
        b.val_fraction = bad;
        test::expect_usage_error([&] { train_classifier(b); }, {"`val_fraction`"});
    }
}

TEST(Trainer, BadOptionsAndData) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 6);
    auto o = small_options(d / "data", d / "run");
    o.model = "resnet-9000";
    test::expect_usage_error([&] { train_classifier(o); }, {"resnet-9000", "cnn-simple"});
    o = small_options(d / "data", d / "run2");
    o.labels = {"epidural"};
    EXPECT_THROW(train_classifier(o), InputError);
    o = small_options(d / "data", d / "run3");
    o.epochs = 0;
    EXPECT_THROW(train_classifier(o), UsageError);
}

// Evaluate's probabilities equal the Predictor's on single images (same preprocessing, same model).
TEST(Trainer, EvaluateMatchesPredictor) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 8);
    auto o = small_options(d / "data", d / "run");
    o.epochs = 2;
    train_classifier(o);
    Predictor p(d / "run" / "model.pt", 1);
    Dataset ds = open_dataset(d / "data");
    auto m = evaluate_dataset(p, ds, d / "eval");
    EXPECT_EQ(m["n"], 16);
    EXPECT_TRUE(fs::exists(d / "eval" / "predictions.csv"));
    std::vector<size_t> all(ds.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    PredictionTable t = predict_items(p, ds, all);
    for (size_t i = 0; i < ds.size(); ++i) {
        auto single = p.predict(load_image(ds.items[i].path, p.modality()));
        EXPECT_NEAR(single.probabilities[0], t.probs[i][0], 1e-5) << ds.items[i].path;
    }
}

// A patient-grouped multi-label manifest (the hidden-set shape: JPEGs, several images per patient):
// training works, metrics cover every label, no patient is in both train and validation.
TEST(Trainer, MultiLabelManifestGroupedByPatient) {
    test::TempDir d;
    test::write_blob_dataset(d / "src", 24, 48, 3);
    std::string csv = "path,patient,any,subdural,notes\n";
    for (int i = 0; i < 48; ++i) {
        char id[16];
        std::snprintf(id, sizeof id, "%03d", i);
        cv::Mat img = cv::imread((d / "src" / (std::string(id) + ".png")).string());
        fs::create_directories(d / "data" / "img");
        cv::imwrite((d / "data" / "img" / (std::string(id) + ".jpg")).string(), img);
        bool pos = i % 2 == 0;
        csv += "img/" + std::string(id) + ".jpg,p" + std::to_string(i / 3) + "," + (pos ? "1" : "0") + "," +
               (pos && i % 4 == 0 ? "1" : "0") + ",free text\n";
    }
    test::write_text(d / "data" / "manifest.csv", csv);
    auto o = small_options(d / "data", d / "run");
    o.epochs = 6;
    TrainResult r = train_classifier(o);
    ASSERT_TRUE(r.metrics["labels"].contains("any"));
    ASSERT_TRUE(r.metrics["labels"].contains("subdural"));
    EXPECT_TRUE(r.metrics.contains("rsna_weighted_log_loss"));  // label set has "any"
    // Grouped split: a patient's images are all in train or all in validation.
    std::ifstream split(d / "run" / "split.csv");
    std::string line;
    std::getline(split, line);
    std::map<std::string, std::set<std::string>> sets;
    while (std::getline(split, line)) {
        auto parts = std::vector<std::string>();
        std::stringstream ss(line);
        std::string cell;
        while (std::getline(ss, cell, ',')) parts.push_back(cell);
        sets[parts[2]].insert(parts[3]);
    }
    EXPECT_EQ(sets.size(), 16u);
    for (const auto& [patient, s] : sets) EXPECT_EQ(s.size(), 1u) << patient;
    Predictor p(d / "run" / "model.pt", 1);
    EXPECT_EQ(p.labels(), (std::vector<std::string>{"any", "subdural"}));
    EXPECT_EQ(p.thresholds().size(), 2u);
}

// Class folders train a softmax classifier whose probabilities sum to one.
TEST(Trainer, ClassFoldersSoftmax) {
    test::TempDir d;
    test::write_blob_class_folders(d / "data", 12, 48, 5);
    auto o = small_options(d / "data", d / "run");
    o.epochs = 4;
    TrainResult r = train_classifier(o);
    EXPECT_TRUE(r.metrics.contains("multiclass"));
    Predictor p(d / "run" / "model.pt", 1);
    EXPECT_TRUE(p.multiclass());
    EXPECT_EQ(p.labels(), (std::vector<std::string>{"hemorrhage", "normal"}));
    auto pred = p.predict(load_image(d / "data" / "normal" / "001.png", p.modality()));
    ASSERT_EQ(pred.probabilities.size(), 2u);
    EXPECT_NEAR(pred.probabilities[0] + pred.probabilities[1], 1.0, 1e-5);
    EXPECT_EQ(pred.decisions[0] + pred.decisions[1], 1);
}

// Slice context (2.5D) for classification: trained on an ordered data set (manifest `slice` column),
// the model sees 2 * context + 1 slices as channels, records its context, and the analysis pipeline
// and evaluation feed it each slice with its neighbours.
TEST(Trainer, SliceContextModel) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 12);
    std::string manifest = "path,patient,slice,hemorrhage\n";
    for (int i = 0; i < 24; ++i) {
        manifest += fmt::format("{:03d}.png,p{},{},{}\n", i, i / 4, i % 4, i % 2 == 0 ? 1 : 0);
    }
    test::write_text(d / "data" / "manifest.csv", manifest);
    auto o = small_options(d / "data", d / "run");
    o.epochs = 3;
    o.context = 1;
    const TrainResult r = train_classifier(o);
    Predictor p(r.model_path, 1);
    EXPECT_EQ(p.context(), 1);
    EXPECT_EQ(p.meta()["model"]["in_channels"], 3);
    EXPECT_EQ(load_run_options(d / "run").context, 1);

    // One study of four images: the pipeline's per-slice probabilities are those of the stacked inputs.
    std::vector<fs::path> images;
    for (int i = 0; i < 4; ++i) images.push_back(d / "data" / fmt::format("{:03d}.png", i));
    const StudyInput study = read_study_files({}, images, {}, ModalityPolicy::CtOnly);
    const StudyResult result = analyze_study(study, &p, nullptr, {});
    ASSERT_EQ(result.slices.size(), 4u);
    EXPECT_EQ(result.samples[0].image.channels(), 1);  // kept alone, for the overlays
    std::vector<Sample> samples;
    for (const auto& s : study.slices) samples.push_back(preprocess(s, p.preprocess_options()));
    const auto manual = p.predict_samples(stack_slice_context(samples, 1));
    for (size_t k = 0; k < 4; ++k) {
        EXPECT_NEAR(result.slices[k].probabilities[0], manual[k].probabilities[0], 1e-6) << k;
    }
    // Evaluation reads the neighbours through the loader.
    const Dataset ds = open_dataset(d / "data");
    EvaluateOptions eo;
    EXPECT_NO_THROW(evaluate_dataset(p, ds, d / "eval", eo));

    // Without a slice order there are no neighbours.
    fs::remove(d / "data" / "manifest.csv");
    o.out = (d / "run2").string();
    test::expect_input_error([&] { train_classifier(o); }, {"`context`", "study order"});
    EXPECT_FALSE(fs::exists(d / "run2"));
}

// Transfer learning (--init): a run starts from another model's weights; tensors that do not fit (a
// head for other labels) start fresh; other architectures and models that barely fit are refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/train/trainer.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"
#include "train/frozen_options.hpp"
#include "train/small_options.hpp"

using namespace hemoscan;
using hemoscan::test::frozen;

namespace {

// The shared small run, smaller still; cnn-simple has no BatchNorm, so nothing is recomputed after training.
TrainOptions tiny_options(const fs::path& data, const fs::path& out) {
    TrainOptions o = test::small_options(data, out);
    o.size = 32;
    o.epochs = 2;
    return o;
}

// Largest absolute difference per tensor name between two models' parameters (names of `b`).
std::map<std::string, double> differences(const fs::path& a, const fs::path& b) {
    LoadedModel ma = load_model(a), mb = load_model(b);
    auto pa = ma.model->named_parameters();
    std::map<std::string, double> out;
    for (const auto& p : mb.model->named_parameters()) {
        const torch::Tensor* q = pa.find(p.key());
        out[p.key()] = q && q->sizes() == p.value().sizes() ? (*q - p.value()).abs().max().item<double>() : -1.0;
    }
    return out;
}

}  // namespace

TEST(Init, StartsFromTheGivenWeights) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 12, 32);
    train_classifier(tiny_options(d / "data", d / "source"));

    TrainOptions o = frozen(tiny_options(d / "data", d / "init"));
    o.init = (d / "source" / "model.pt").string();
    const TrainResult r = train_classifier(o);
    for (const auto& [name, diff] : differences(d / "source" / "model.pt", r.model_path)) {
        EXPECT_GE(diff, 0.0) << name;
        EXPECT_LT(diff, 1e-6) << name;
    }
    // The run says where it started: init.json, config.json and the model file.
    const auto info = test::read_json(d / "init" / "init.json");
    EXPECT_EQ(info["file"], o.init);
    EXPECT_EQ(info["fresh"].size(), 0u);
    EXPECT_EQ(info["values_taken"], info["values"]);
    EXPECT_EQ(test::read_json(d / "init" / "config.json")["options"]["init"], o.init);
    EXPECT_EQ(load_model(r.model_path).meta["init"]["file"], o.init);
    EXPECT_EQ(load_run_options(d / "init").init, o.init);

    // Without --init the same frozen run keeps its random start, far from the source weights.
    const TrainResult fresh = train_classifier(frozen(tiny_options(d / "data", d / "fresh")));
    double largest = 0;
    for (const auto& [name, diff] : differences(d / "source" / "model.pt", fresh.model_path))
        largest = std::max(largest, diff);
    EXPECT_GT(largest, 1e-3);
    EXPECT_FALSE(fs::exists(d / "fresh" / "init.json"));
}

// A model trained for one label starts a two-class (softmax) run: the body transfers, the head is new.
TEST(Init, HeadForOtherLabelsStartsFresh) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 12, 32);
    train_classifier(tiny_options(d / "data", d / "source"));
    for (int i = 0; i < 24; ++i) {
        char id[16];
        std::snprintf(id, sizeof id, "%03d", i);
        const fs::path to = d / "classes" / (i % 2 == 0 ? "hemorrhage" : "normal");
        fs::create_directories(to);
        fs::copy_file(d / "data" / (std::string(id) + ".png"), to / (std::string(id) + ".png"));
    }
    TrainOptions o = frozen(tiny_options(d / "classes", d / "init"));
    o.init = (d / "source" / "model.pt").string();
    const TrainResult r = train_classifier(o);
    const auto diffs = differences(d / "source" / "model.pt", r.model_path);
    EXPECT_EQ(diffs.at("out.weight"), -1.0);  // [2, C] against [1, C]: not taken
    EXPECT_EQ(diffs.at("out.bias"), -1.0);
    size_t taken = 0;
    for (const auto& [name, diff] : diffs) {
        if (name.rfind("out.", 0) == 0) continue;
        EXPECT_LT(diff, 1e-6) << name;
        EXPECT_GE(diff, 0.0) << name;
        ++taken;
    }
    EXPECT_GT(taken, 2u);
    const auto info = test::read_json(d / "init" / "init.json");
    EXPECT_EQ(info["fresh"], (nlohmann::json{"out.weight", "out.bias"}));
    EXPECT_LT(info["values_taken"].get<double>(), info["values"].get<double>());
}

TEST(Init, RefusesWhatDoesNotTransfer) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 6, 32);
    train_classifier(tiny_options(d / "data", d / "source"));
    const std::string source = (d / "source" / "model.pt").string();

    TrainOptions other_arch = tiny_options(d / "data", d / "a");
    other_arch.model = "cnn";
    other_arch.init = source;
    test::expect_usage_error([&] { train_classifier(other_arch); }, {"cnn-simple"});
    TrainOptions wider = tiny_options(d / "data", d / "b");
    wider.width = 2.0;  // every conv and the head change shape
    wider.init = source;
    EXPECT_THROW(train_classifier(wider), UsageError);
    TrainOptions missing = tiny_options(d / "data", d / "c");
    missing.init = (d / "nowhere.pt").string();
    EXPECT_THROW(train_classifier(missing), InputError);
    EXPECT_FALSE(fs::exists(d / "c" / "model.pt"));
}

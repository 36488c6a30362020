// Segmentation model files: round trips keep outputs, config and meta; classification and
// segmentation files are told apart by meta["task"], with errors naming the file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/segmenter.hpp"
#include "hemoscan/models/serialize.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

// Moves BatchNorm running stats and weights away from their initial values, so that a round trip
// that dropped buffers or parameters would show.
void perturb(SegmenterImpl& model) {
    model.train();
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) model.forward(torch::randn({2, model.config().in_channels, 16, 16}) * 3 + 1);
    for (auto& p : model.parameters()) p.add_(torch::randn_like(p) * 0.01);
}

std::string message_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const InputError& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("wrong exception type: ") + e.what();
    }
    return "no exception";
}

// A model file written by hand (format 1), with any meta.
void write_raw(const fs::path& path, const nlohmann::json& meta, const torch::nn::Module& model) {
    torch::serialize::OutputArchive archive, weights;
    archive.write("hemoscan_format", c10::IValue(int64_t(1)));
    archive.write("hemoscan_meta", c10::IValue(meta.dump()));
    model.save(weights);
    archive.write("weights", weights);
    archive.save_to(path.string());
}

}  // namespace

TEST(SegSerialize, RoundTripKeepsOutputsConfigAndMeta) {
    torch::set_num_threads(1);
    test::TempDir dir;
    for (const std::string name : {"unet", "resunet", "attention-unet"}) {
        SCOPED_TRACE(name);
        torch::manual_seed(5);
        SegModelConfig c;
        c.name = name;
        c.in_channels = 3;
        c.num_classes = 4;
        c.depth = 2;
        c.base_width = 4;
        c.dropout = 0.2;
        auto model = create_segmenter(c);
        perturb(*model);
        model->eval();

        const nlohmann::json meta = {{"class_names", {"background", "a", "b", "c"}},
                                     {"input_size", 16},
                                     {"task", "replaced"},
                                     {"model", "replaced by save_segmenter"}};
        const fs::path path = dir / ("sub/" + name + ".pt");
        save_segmenter(path, *model, meta);

        const auto loaded = load_segmenter(path);
        ASSERT_TRUE(loaded.model);
        EXPECT_FALSE(loaded.model->is_training());
        EXPECT_EQ(loaded.meta.at("task"), "segment");
        EXPECT_EQ(loaded.meta.at("class_names"), meta.at("class_names"));
        EXPECT_EQ(loaded.meta.at("input_size"), 16);
        const auto& m = loaded.model->config();
        EXPECT_EQ(m.name, name);
        EXPECT_EQ(m.in_channels, 3);
        EXPECT_EQ(m.num_classes, 4);
        EXPECT_EQ(m.depth, 2);
        EXPECT_EQ(m.base_width, 4);
        EXPECT_DOUBLE_EQ(m.dropout, 0.2);
        EXPECT_EQ(loaded.meta.at("model").at("name"), name);

        torch::NoGradGuard no_grad;
        const auto x = torch::randn({2, 3, 16, 12});
        EXPECT_TRUE(torch::equal(model->forward(x), loaded.model->forward(x)));
        EXPECT_EQ(read_model_meta(path), loaded.meta);
    }
}

TEST(SegSerialize, ClassifierFilesCarryTheirTask) {
    test::TempDir dir;
    ModelConfig c;
    c.name = "cnn-simple";
    save_model(dir / "c.pt", *create_model(c), {{"labels", {"any"}}});
    EXPECT_EQ(read_model_meta(dir / "c.pt").at("task"), "classify");
    EXPECT_EQ(load_model(dir / "c.pt").meta.at("task"), "classify");

    // Files from before segmentation have no "task": still classifiers.
    auto model = create_model(c);
    write_raw(dir / "old.pt", {{"model", model_config_to_json(model->config())}}, *model);
    EXPECT_FALSE(read_model_meta(dir / "old.pt").contains("task"));
    EXPECT_EQ(load_model(dir / "old.pt").model->config().name, "cnn-simple");
    test::expect_input_error([&] { load_segmenter(dir / "old.pt"); }, {(dir / "old.pt").string(), "classification"});
}

TEST(SegSerialize, WrongKindOfModelIsAnInputErrorNamingTheFile) {
    test::TempDir dir;
    SegModelConfig s;
    s.depth = 1;
    s.base_width = 4;
    const fs::path seg = dir / "seg.pt", cls = dir / "cls.pt";
    save_segmenter(seg, *create_segmenter(s));
    ModelConfig c;
    c.name = "cnn-simple";
    save_model(cls, *create_model(c));

    const std::string a = message_of([&] { load_model(seg); });
    EXPECT_NE(a.find(seg.string()), std::string::npos) << a;
    EXPECT_NE(a.find("segmentation model"), std::string::npos) << a;
    EXPECT_NE(a.find("hemoscan segment"), std::string::npos) << a;
    const std::string b = message_of([&] { load_segmenter(cls); });
    EXPECT_NE(b.find(cls.string()), std::string::npos) << b;
    EXPECT_NE(b.find("classification model"), std::string::npos) << b;
    EXPECT_NE(b.find("hemoscan predict"), std::string::npos) << b;
    test::expect_input_error([&] { load_segmenter(dir / "missing.pt"); }, {(dir / "missing.pt").string(), "not found"});
    test::expect_input_error([&] { read_model_meta(dir / "missing.pt"); }, {(dir / "missing.pt").string()});
}

TEST(SegSerialize, BadTaskOrWeightsThatDoNotFitAreInputErrors) {
    test::TempDir dir;
    SegModelConfig s;
    s.depth = 2;
    s.base_width = 4;
    auto model = create_segmenter(s);

    write_raw(dir / "task.pt", {{"task", "detect"}, {"model", seg_model_config_to_json(s)}}, *model);
    test::expect_input_error([&] { load_segmenter(dir / "task.pt"); }, {(dir / "task.pt").string(), "task 'detect'"});
    test::expect_input_error([&] { read_model_meta(dir / "task.pt"); }, {(dir / "task.pt").string()});

    // The meta of a wider model over these weights: the shapes differ.
    SegModelConfig wide = s;
    wide.base_width = 8;
    write_raw(dir / "wide.pt", {{"task", "segment"}, {"model", seg_model_config_to_json(wide)}}, *model);
    const std::string msg = message_of([&] { load_segmenter(dir / "wide.pt"); });
    EXPECT_NE(msg.find((dir / "wide.pt").string()), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

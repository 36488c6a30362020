// Model files: round trips keep outputs, config and meta; anything that is not a hemoscan model is
// an InputError naming the file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

// Moves BatchNorm running stats and weights away from their initial values, so that a round trip
// that dropped buffers or parameters would show.
void perturb(ClassifierImpl& model) {
    model.train();
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) model.forward(torch::randn({4, model.config().in_channels, 32, 32}) * 3 + 1);
    for (auto& p : model.parameters()) p.add_(torch::randn_like(p) * 0.01);
}

void expect_input_error_naming(const fs::path& path, const std::string& fragment = "") {
    try {
        load_model(path);
        ADD_FAILURE() << "no exception for " << path;
    } catch (const InputError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
        EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;  // no backtrace
    }
}

void write_bytes(const fs::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
}

}  // namespace

TEST(Serialize, RoundTripKeepsOutputsConfigAndMeta) {
    test::TempDir dir;
    for (const std::string name : {"cnn", "cnn-simple", "cnn-large"}) {
        SCOPED_TRACE(name);
        torch::manual_seed(5);
        ModelConfig c;
        c.name = name;
        c.in_channels = 3;
        c.num_outputs = 4;
        c.multiclass = true;
        c.width = 0.5;
        auto model = create_model(c);
        perturb(*model);
        model->eval();

        const nlohmann::json meta = {{"labels", {"a", "b", "c", "d"}},
                                     {"input_size", 64},
                                     {"threshold", 0.37},
                                     {"window", {{"center", 40}, {"width", 80}}},
                                     {"model", "replaced by save_model"}};
        const fs::path path = dir / ("sub/dir/" + name + ".pt");  // parent folders are created
        save_model(path, *model, meta);

        const auto loaded = load_model(path);
        ASSERT_TRUE(loaded.model);
        EXPECT_FALSE(loaded.model->is_training());
        EXPECT_EQ(loaded.meta.at("labels"), meta.at("labels"));
        EXPECT_EQ(loaded.meta.at("input_size"), 64);
        EXPECT_DOUBLE_EQ(loaded.meta.at("threshold").get<double>(), 0.37);
        EXPECT_EQ(loaded.meta.at("window").at("width"), 80);
        EXPECT_EQ(loaded.meta.at("model"), model_config_to_json(model->config()));
        const auto& lc = loaded.model->config();
        EXPECT_EQ(lc.name, name);
        EXPECT_EQ(lc.in_channels, 3);
        EXPECT_EQ(lc.num_outputs, 4);
        EXPECT_TRUE(lc.multiclass);
        EXPECT_DOUBLE_EQ(lc.width, 0.5);
        EXPECT_EQ(lc.dropout, model->config().dropout);

        // Every parameter and buffer (BatchNorm running stats included) comes back bit for bit.
        const auto a = model->named_buffers(), b = loaded.model->named_buffers();
        ASSERT_EQ(a.size(), b.size());
        for (const auto& buf : a) EXPECT_TRUE(torch::equal(buf.value(), b[buf.key()])) << buf.key();
        const auto pa = model->named_parameters(), pb = loaded.model->named_parameters();
        for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();

        torch::NoGradGuard no_grad;
        const auto x = torch::randn({2, 3, 64, 64});
        EXPECT_TRUE(torch::allclose(model->forward(x), loaded.model->forward(x), 0.0, 1e-6));
    }
    // Only the final files remain (no temporaries).
    size_t files = 0;
    for (const auto& e : fs::directory_iterator(dir / "sub/dir")) {
        ++files;
        EXPECT_EQ(e.path().filename().string().rfind('.', 0), std::string::npos) << e.path();
    }
    EXPECT_EQ(files, 3u);
}

TEST(Serialize, NullMetaAndOverwrite) {
    test::TempDir dir;
    ModelConfig c;
    c.name = "cnn-simple";
    auto model = create_model(c);
    save_model(dir / "m.pt", *model, nullptr);
    EXPECT_EQ(load_model(dir / "m.pt").meta,
              nlohmann::json({{"model", model_config_to_json(model->config())}, {"task", "classify"}}));
    save_model(dir / "m.pt", *model, {{"epoch", 7}});  // replaces the file
    EXPECT_EQ(load_model(dir / "m.pt").meta.at("epoch"), 7);
    EXPECT_THROW(save_model(dir / "x.pt", *model, nlohmann::json::array({1, 2})), UsageError);
    EXPECT_FALSE(fs::exists(dir / "x.pt"));
}

TEST(Serialize, MissingEmptyAndGarbageFilesAreInputErrors) {
    test::TempDir dir;
    expect_input_error_naming(dir / "missing.pt", "not found");
    write_bytes(dir / "empty.pt", "");
    expect_input_error_naming(dir / "empty.pt", "empty");
    write_bytes(dir / "garbage.pt", std::string("PK\x03\x04 this is not a model at all") + std::string(300, 'x'));
    expect_input_error_naming(dir / "garbage.pt", "not a hemoscan model");
    expect_input_error_naming(dir.path());  // a folder

    // A valid model file cut in half.
    ModelConfig c;
    c.name = "cnn-simple";
    save_model(dir / "whole.pt", *create_model(c));
    const std::string whole = read_file(dir / "whole.pt");
    write_bytes(dir / "half.pt", whole.substr(0, whole.size() / 2));
    expect_input_error_naming(dir / "half.pt");
}

TEST(Serialize, TorchFilesThatAreNotHemoscanModelsAreInputErrors) {
    test::TempDir dir;
    // A plain tensor saved with torch::save.
    torch::save(torch::ones({3}), (dir / "tensor.pt").string());
    expect_input_error_naming(dir / "tensor.pt", "not a hemoscan model");

    ModelConfig simple;
    simple.name = "cnn-simple";
    auto write = [&](const fs::path& path, int64_t version, const nlohmann::json& meta,
                     const torch::nn::Module& weights_of) {
        torch::serialize::OutputArchive archive, weights;
        archive.write("hemoscan_format", c10::IValue(version));
        archive.write("hemoscan_meta", c10::IValue(meta.dump()));
        weights_of.save(weights);
        archive.write("weights", weights);
        archive.save_to(path.string());
    };
    auto model = create_model(simple);
    const nlohmann::json good_meta = {{"model", model_config_to_json(simple)}};
    write(dir / "ok.pt", 1, good_meta, *model);
    EXPECT_NO_THROW(load_model(dir / "ok.pt"));  // the hand-written layout matches save_model's

    write(dir / "future.pt", 99, good_meta, *model);
    expect_input_error_naming(dir / "future.pt", "version 99");

    ModelConfig large = simple;
    large.name = "cnn-large";
    write(dir / "mismatch.pt", 1, {{"model", model_config_to_json(large)}}, *model);
    expect_input_error_naming(dir / "mismatch.pt");

    ModelConfig wider = simple;
    wider.width = 2.0;  // same layer names, other shapes
    write(dir / "shapes.pt", 1, {{"model", model_config_to_json(wider)}}, *model);
    expect_input_error_naming(dir / "shapes.pt");

    ModelConfig unknown = simple;
    unknown.name = "vit";
    write(dir / "unknown.pt", 1, {{"model", model_config_to_json(unknown)}}, *model);
    expect_input_error_naming(dir / "unknown.pt", "unknown model 'vit'");

    write(dir / "nomodel.pt", 1, {{"labels", {"any"}}}, *model);
    expect_input_error_naming(dir / "nomodel.pt", "\"model\"");
}

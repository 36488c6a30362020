// `hemoscan export` (issue 27): a model's weights under torchvision's names with the metadata to rebuild
// it. Parity in the export direction: Python torchvision loads the file strictly and gives hemoscan's
// logits. Needs Debian's python3-torchvision (scripts/setup.sh --tests); skipped without it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/export.hpp"
#include "hemoscan/models/pretrained.hpp"
#include "hemoscan/models/registry.hpp"
#include "hemoscan/models/seg_registry.hpp"
#include "hemoscan/models/segmenter.hpp"
#include "hemoscan/models/serialize.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using test::kPython;
namespace fs = std::filesystem;

namespace {


std::shared_ptr<ClassifierImpl> make(const std::string& name, int in_channels) {
    ModelConfig c;
    c.name = name;
    c.in_channels = in_channels;
    c.num_outputs = 3;
    auto m = create_model(c);
    torch::NoGradGuard ng;  // BatchNorm that is not the identity in evaluation mode
    for (auto& mod : m->modules(false)) {
        if (auto* bn = mod->as<torch::nn::BatchNorm2d>()) {
            bn->running_mean.uniform_(-0.2, 0.2);
            bn->running_var.uniform_(0.5, 1.5);
            bn->weight.uniform_(0.5, 1.5);
            bn->bias.uniform_(-0.2, 0.2);
        }
    }
    m->eval();
    return m;
}

const nlohmann::json kMeta = {{"labels", {"any", "epidural", "subdural"}},
                              {"multiclass", false},
                              {"thresholds", {0.3, 0.4, 0.5}},
                              {"preprocess", {{"size", 64}, {"normalization", "imagenet"}}}};

}  // namespace

TEST(Export, TorchvisionLoadsTheFileAndGivesTheSameLogits) {
    if (test::run_command(std::string(kPython) + " -c 'import torchvision' 2>&1").exit_code != 0) {
        GTEST_SKIP() << "python3-torchvision is not installed (scripts/setup.sh --tests)";
    }
    test::TempDir d;
    // {hemoscan name, input channels}: a one-channel model is exported with its first conv over 3 channels.
    // Not the VGGs: at 140M values each they cost about a minute here, and their export path is the same
    // code (their names and logits are checked against torchvision in test_parity.cpp).
    const std::vector<std::pair<std::string, int>> archs{{"resnet18", 1},    {"resnet34", 3},      {"resnet50", 3},
                                                         {"densenet121", 3}, {"efficientnet-b0", 1}};
    std::string cmd = std::string(kPython) + " " +
                      test::shell_quote(fs::path(HEMOSCAN_SOURCE_DIR) / "tests/models/parity/load_export.py") + " " +
                      test::shell_quote(d.path());
    torch::manual_seed(0);
    torch::NoGradGuard ng;
    for (const auto& [arch, channels] : archs) {
        SCOPED_TRACE(arch);
        auto m = make(arch, channels);
        save_model(d / (arch + ".pt"), *m, kMeta);
        const ExportSummary s = export_model(d / (arch + ".pt"), d / (arch + ".safetensors"));
        EXPECT_EQ(s.torchvision, torchvision_name(arch));
        EXPECT_EQ(s.expanded, channels == 1);
        EXPECT_EQ(s.metadata.at("labels"), R"(["any","epidural","subdural"])");
        EXPECT_EQ(s.metadata.at("activation"), "sigmoid");
        EXPECT_EQ(s.metadata.at("input_channels"), std::to_string(channels));
        EXPECT_EQ(nlohmann::json::parse(s.metadata.at("preprocess"))["normalization"], "imagenet");
        const torch::Tensor x = torch::sin(torch::arange(2 * channels * 64 * 64).to(torch::kFloat) * 0.37)
                                    .reshape({2, channels, 64, 64});
        // Grey input: torchvision gets it in all three channels.
        write_safetensors(d / (arch + ".io.safetensors"),
                          {{"input", channels == 1 ? x.repeat({1, 3, 1, 1}) : x}, {"logits", m->forward(x)}});
        cmd += " " + arch;
    }
    const auto r = test::run_command(cmd + " 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::istringstream lines(r.output);
    std::string line;
    size_t seen = 0;
    while (std::getline(lines, line)) {
        const nlohmann::json j = nlohmann::json::parse(line);
        std::printf("%s\n", line.c_str());
        SCOPED_TRACE(j.dump());
        // The same kernels give the same numbers (measured: 0 for 3-channel models); the expanded first conv
        // sums its three channels in another order (1.3e-6 measured for resnet18).
        EXPECT_LE(j["max_abs_diff"].get<double>(), 1e-4);
        EXPECT_EQ(j["labels"], kMeta["labels"]);
        ++seen;
    }
    EXPECT_EQ(seen, archs.size());
}

// Architectures without a torchvision twin keep hemoscan's names; segmenters export too; a file
// that is not a model is refused with its name.
TEST(Export, OtherModelsAndBadFiles) {
    test::TempDir d;
    auto cnn = make("cnn", 1);
    save_model(d / "cnn.pt", *cnn, kMeta);
    const ExportSummary s = export_model(d / "cnn.pt", d / "cnn.safetensors");
    EXPECT_TRUE(s.torchvision.empty());
    EXPECT_FALSE(s.expanded);
    nlohmann::json meta;
    const StateDict sd = read_safetensors(d / "cnn.safetensors", &meta);
    EXPECT_EQ(meta["architecture"], "cnn");
    EXPECT_EQ(meta["thresholds"], "[0.3,0.4,0.5]");
    EXPECT_EQ(sd.size(), s.tensors);
    EXPECT_TRUE(torch::equal(sd.at("out.weight"), cnn->named_parameters()["out.weight"]));
    // A ResNet with max pooling is not torchvision's: its own names, no claim.
    ModelConfig c;
    c.name = "resnet18";
    c.pool = "max";
    save_model(d / "r.pt", *create_model(c), kMeta);
    EXPECT_TRUE(export_model(d / "r.pt", d / "r.safetensors").torchvision.empty());

    SegModelConfig sc;
    sc.base_width = 8;
    sc.depth = 2;
    save_segmenter(d / "seg.pt", *create_segmenter(sc), {{"class_names", {"background", "bleed"}}});
    const ExportSummary seg = export_model(d / "seg.pt", d / "seg.safetensors");
    EXPECT_EQ(seg.task, "segment");
    EXPECT_EQ(seg.metadata.at("labels"), R"(["background","bleed"])");
    EXPECT_EQ(seg.metadata.at("num_classes"), "2");

    test::write_text(d / "junk.pt", "not a model");
    test::expect_input_error([&] { export_model(d / "junk.pt", d / "junk.safetensors"); }, {"junk.pt"});
    EXPECT_FALSE(fs::exists(d / "junk.safetensors"));
}

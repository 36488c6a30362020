// Parity with the reference implementation (issue 27): torchvision builds each architecture in
// Python (tests/models/parity/torchvision_reference.py), saves its state dict and its outputs for a
// fixed input; hemoscan loads the state dict by name and must give the same logits in evaluation mode.
// Needs Debian's python3-torchvision (scripts/setup.sh --tests, which test.sh runs); skipped without it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <regex>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/pretrained.hpp"
#include "hemoscan/models/registry.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using test::kPython;
namespace fs = std::filesystem;

namespace {


bool torchvision_available() {
    return test::run_command(std::string(kPython) + " -c 'import torchvision' 2>&1").exit_code == 0;
}

std::shared_ptr<ClassifierImpl> model_named(const std::string& name, int in_channels) {
    ModelConfig c;
    c.name = name;
    c.in_channels = in_channels;
    c.num_outputs = 5;
    return create_model(c);
}

}  // namespace

TEST(Parity, TorchvisionResNetsGiveTheSameLogits) {
    if (!torchvision_available()) GTEST_SKIP() << "python3-torchvision is not installed (scripts/setup.sh --tests)";
    test::TempDir d;
    const std::vector<std::string> archs{"resnet18", "resnet34", "resnet50"};
    std::string cmd = std::string(kPython) + " " +
                      test::shell_quote(fs::path(HEMOSCAN_SOURCE_DIR) / "tests/models/parity/torchvision_reference.py") +
                      " " + test::shell_quote(d.path());
    for (const auto& a : archs) cmd += " " + a;
    const auto r = test::run_command(cmd + " 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    torch::NoGradGuard ng;
    for (const auto& arch : archs) {
        SCOPED_TRACE(arch);
        const StateDict state = read_safetensors(d / (arch + ".safetensors"));
        // torch.save's format (what torchvision publishes) gives the same tensors.
        const StateDict pth = read_weights(d / (arch + ".pth"));
        ASSERT_EQ(pth.size(), state.size());
        for (const auto& [k, t] : state) EXPECT_TRUE(torch::equal(pth.at(k), t)) << k;
        if (arch == archs.front()) {
            const StateDict ckpt = read_torch_state_dict(d / (arch + ".ckpt.pth"));
            EXPECT_EQ(ckpt.size(), state.size());
            EXPECT_TRUE(torch::equal(ckpt.at("fc.weight"), state.at("fc.weight")));
        }
        const StateDict io = read_safetensors(d / (arch + ".io.safetensors"));
        auto model = model_named(arch, 3);
        const WeightReport report = load_state_dict(*model, state);
        EXPECT_TRUE(report.fresh.empty()) << report.to_json().dump();
        EXPECT_TRUE(report.unused.empty()) << report.to_json().dump();
        EXPECT_EQ(report.loaded.size(), state.size());
        model->eval();
        const torch::Tensor diff = (model->forward(io.at("input")) - io.at("logits")).abs().max();
        EXPECT_LE(diff.item<double>(), 1e-4);

        // One-channel input: the RGB first conv summed over its channels answers a grey image as the
        // RGB model answers the same image in all three channels.
        auto grey = model_named(arch, 1);
        const WeightReport adapted = load_state_dict(*grey, state);
        EXPECT_EQ(adapted.adapted, std::vector<std::string>{"conv1.weight"});
        grey->eval();
        const torch::Tensor x = io.at("input").slice(1, 0, 1);
        // Exact in arithmetic; in floats the three channels are summed in another order (2e-4 measured
        // for resnet50, whose logits reach ~3).
        const torch::Tensor expected = io.at("grey_logits");
        EXPECT_LE((grey->forward(x) - expected).abs().max().item<double>(),
                  1e-3 * std::max(1.0, expected.abs().max().item<double>()));
    }
}

// The same for VGG-19 (plain and with BatchNorm), DenseNet-121 and EfficientNet-B0; torchvision writes '_'
// where hemoscan writes '-', and each names its first conv its own way. EfficientNet's stochastic depth is
// checked in training mode too: the same seed draws the same samples to drop.
TEST(Parity, TorchvisionVggDenseNetEfficientNetGiveTheSameLogits) {
    if (!torchvision_available()) GTEST_SKIP() << "python3-torchvision is not installed (scripts/setup.sh --tests)";
    struct Arch {
        std::string torchvision, hemoscan, first_conv;
    };
    // vgg19-bn only: vgg19 is the same class without the BatchNorms (their indices: test_models.cpp), and
    // each VGG costs ~15 s here for its 140M parameters.
    const std::vector<Arch> archs{{"vgg19_bn", "vgg19-bn", "features.0.weight"},
                                  {"densenet121", "densenet121", "features.conv0.weight"},
                                  {"efficientnet_b0", "efficientnet-b0", "features.0.0.weight"}};
    test::TempDir d;
    const fs::path script = fs::path(HEMOSCAN_SOURCE_DIR) / "tests/models/parity/torchvision_reference.py";
    std::string cmd = std::string(kPython) + " " + test::shell_quote(script) + " " + test::shell_quote(d.path());
    for (const auto& a : archs) cmd += " " + a.torchvision;
    const auto r = test::run_command(cmd + " 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    torch::NoGradGuard ng;
    for (const auto& arch : archs) {
        SCOPED_TRACE(arch.hemoscan);
        const StateDict state = read_safetensors(d / (arch.torchvision + ".safetensors"));
        // The script writes torch.save files only for models under 50M parameters (not the VGGs).
        const fs::path pth = d / (arch.torchvision + ".pth");
        EXPECT_EQ(fs::exists(pth), arch.torchvision.rfind("vgg", 0) != 0);
        if (fs::exists(pth)) {
            const StateDict saved = read_weights(pth);
            ASSERT_EQ(saved.size(), state.size());
            for (const auto& [k, t] : state) EXPECT_TRUE(torch::equal(saved.at(k), t)) << k;
        }
        const StateDict io = read_safetensors(d / (arch.torchvision + ".io.safetensors"));
        auto model = model_named(arch.hemoscan, 3);
        const WeightReport report = load_state_dict(*model, state);
        EXPECT_TRUE(report.fresh.empty()) << report.to_json().dump();
        EXPECT_TRUE(report.unused.empty()) << report.to_json().dump();
        EXPECT_EQ(report.loaded.size(), state.size());
        model->eval();
        const torch::Tensor expected = io.at("logits");
        const double diff = (model->forward(io.at("input")) - expected).abs().max().item<double>();
        std::printf("%-16s max |logit diff| %.3g (logits up to %.3g)\n", arch.hemoscan.c_str(), diff,
                    expected.abs().max().item<double>());
        EXPECT_LE(diff, 1e-4);

        auto grey = model_named(arch.hemoscan, 1);
        const WeightReport adapted = load_state_dict(*grey, state);
        EXPECT_EQ(adapted.adapted, std::vector<std::string>{arch.first_conv});
        grey->eval();
        const torch::Tensor grey_expected = io.at("grey_logits");
        EXPECT_LE((grey->forward(io.at("input").slice(1, 0, 1)) - grey_expected).abs().max().item<double>(),
                  1e-3 * std::max(1.0, grey_expected.abs().max().item<double>()));

        if (io.count("train_logits")) {
            // BatchNorm on the batch's statistics, dropout 0.2 and stochastic depth from the torch RNG.
            model->train();
            torch::manual_seed(7);
            const torch::Tensor train_expected = io.at("train_logits");
            const double train_diff = (model->forward(io.at("input")) - train_expected).abs().max().item<double>();
            std::printf("%-16s max |logit diff| in training mode %.3g\n", arch.hemoscan.c_str(), train_diff);
            EXPECT_LE(train_diff, 1e-4 * std::max(1.0, train_expected.abs().max().item<double>()));
        }
    }
}

// torchvision's published densenet121-a639ec97.pth names the modules of its dense layers the old way
// ("denselayer1.norm.1.weight") and has no num_batches_tracked; load_state_dict renames as torchvision does.
TEST(Parity, DenseNetOldKeyNamesAreRenamed) {
    torch::manual_seed(4);
    auto source = model_named("densenet121", 3);
    const std::regex current(R"(^(.*denselayer\d+\.(?:norm|conv))([12])\.(weight|bias|running_mean|running_var)$)");
    StateDict old;
    size_t renamed = 0;
    auto add = [&](const std::string& key, const torch::Tensor& t) {
        if (key.find("num_batches_tracked") != std::string::npos) return;
        std::smatch m;
        const bool match = std::regex_match(key, m, current);
        if (match) ++renamed;
        old["module." + (match ? m[1].str() + "." + m[2].str() + "." + m[3].str() : key)] = t.detach().clone();
    };
    for (const auto& p : source->named_parameters()) add(p.key(), p.value());
    for (const auto& b : source->named_buffers()) add(b.key(), b.value());
    ASSERT_TRUE(old.count("module.features.denseblock1.denselayer1.norm.1.weight"));
    ASSERT_TRUE(old.count("module.features.denseblock4.denselayer16.conv.2.weight"));
    EXPECT_EQ(renamed, 58u * 10);  // 58 dense layers: 2 convs, 2 BatchNorms of 4 tensors
    old["features.denseblock1.denselayer1.norm.3.weight"] = torch::ones({64});  // not the pattern: unused

    torch::manual_seed(5);
    auto target = model_named("densenet121", 3);
    const WeightReport r = load_state_dict(*target, old);
    EXPECT_EQ(r.unused, std::vector<std::string>{"features.denseblock1.denselayer1.norm.3.weight"});
    EXPECT_EQ(r.loaded.size(), old.size() - 1);
    // 121 BatchNorms: norm0, 2 per dense layer, 3 transitions, norm5.
    EXPECT_EQ(r.fresh.size(), 121u);
    for (const auto& k : r.fresh) EXPECT_NE(k.find("num_batches_tracked"), std::string::npos) << k;
    const auto params = target->named_parameters();
    for (const auto& p : source->named_parameters()) EXPECT_TRUE(torch::equal(params[p.key()], p.value())) << p.key();
    const auto buffers = target->named_buffers();
    EXPECT_TRUE(torch::equal(buffers["features.denseblock2.denselayer3.norm2.running_var"],
                             source->named_buffers()["features.denseblock2.denselayer3.norm2.running_var"]));
}

// safetensors round trip, prefixes, and what does not fit.
TEST(Parity, SafetensorsAndNameMapping) {
    test::TempDir d;
    torch::manual_seed(1);
    auto model = model_named("resnet18", 3);
    StateDict sd;
    for (const auto& p : model->named_parameters()) sd["module." + p.key()] = p.value().detach().clone();
    for (const auto& b : model->named_buffers()) sd["module." + b.key()] = b.value().detach().clone();
    sd["module.fc.weight"] = torch::zeros({1000, 512});  // an ImageNet head: stays fresh
    sd["extra.thing"] = torch::ones({2});
    write_safetensors(d / "w.safetensors", sd, {{"labels", "any"}});
    nlohmann::json meta;
    const StateDict back = read_safetensors(d / "w.safetensors", &meta);
    EXPECT_EQ(meta["labels"], "any");
    ASSERT_EQ(back.size(), sd.size());
    EXPECT_TRUE(torch::equal(back.at("module.conv1.weight"), sd.at("module.conv1.weight")));
    EXPECT_EQ(back.at("module.bn1.num_batches_tracked").scalar_type(), torch::kInt64);

    torch::manual_seed(2);
    auto other = model_named("resnet18", 3);
    const WeightReport r = load_state_dict(*other, back);
    EXPECT_TRUE(torch::equal(other->named_parameters()["conv1.weight"], sd.at("module.conv1.weight")));
    ASSERT_EQ(r.fresh.size(), 1u);
    EXPECT_NE(r.fresh[0].find("fc.weight"), std::string::npos);
    EXPECT_EQ(r.unused, std::vector<std::string>{"extra.thing"});

    // Not a torch.save zip: a clear refusal.
    test::expect_input_error([&] { read_torch_state_dict(d / "w.safetensors"); }, {"w.safetensors", "torch.save"});

    test::write_text(d / "bad.safetensors", std::string("\x10\0\0\0\0\0\0\0{not json}      ", 24));
    test::expect_input_error([&] { read_safetensors(d / "bad.safetensors"); }, {"bad.safetensors", "JSON"});
    test::write_text(d / "short.safetensors", "abc");
    test::expect_input_error([&] { read_safetensors(d / "short.safetensors"); }, {"short.safetensors"});
    // Offsets past the data.
    const std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
    std::string bytes(8, '\0');
    bytes[0] = static_cast<char>(header.size());
    test::write_text(d / "trunc.safetensors", bytes + header + std::string(8, '\0'));
    test::expect_input_error([&] { read_safetensors(d / "trunc.safetensors"); }, {"trunc.safetensors", "'a'"});
}

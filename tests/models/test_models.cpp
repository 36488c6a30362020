// Architectures and the registry: shapes for every model, the features/head split, exact parameter
// counts, config validation, deterministic init, and that every model can learn.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/registry.hpp"

using namespace hemoscan;

namespace {

// For the whole test_models binary (one environment: test files are compiled together in batches). One
// thread: ctest runs tests side by side, and the parity tests' tolerances were measured with one thread
// (oneDNN's reductions split differently with two: resnet50's logits moved by 2e-4).
struct TorchThreads : ::testing::Environment {
    void SetUp() override { torch::set_num_threads(1); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new TorchThreads);

ModelConfig config(const std::string& name, int in_channels = 1, int num_outputs = 1) {
    ModelConfig c;
    c.name = name;
    c.in_channels = in_channels;
    c.num_outputs = num_outputs;
    return c;
}

// Conv 3x3 with bias, conv 3x3 without bias + BatchNorm, dense layer.
int64_t conv(int64_t in, int64_t out) { return in * out * 9 + out; }
int64_t conv_bn(int64_t in, int64_t out) { return in * out * 9 + 2 * out; }
int64_t dense(int64_t in, int64_t out) { return in * out + out; }

}  // namespace

TEST(Registry, ListsTheModelsDefaultFirst) {
    const auto models = list_models();
    ASSERT_EQ(models.size(), 11u);
    EXPECT_EQ(models[0].name, "cnn");
    EXPECT_EQ(models[1].name, "cnn-simple");
    EXPECT_EQ(models[2].name, "cnn-large");
    EXPECT_EQ(models[3].name, "unet-ae");  // seed 000's U-Net autoencoder classifier (issue 5)
    EXPECT_EQ(models[4].name, "resnet18");  // torchvision's structure (issue 27)
    EXPECT_EQ(models[6].name, "resnet50");
    EXPECT_EQ(models[7].name, "vgg19");
    EXPECT_EQ(models[8].name, "vgg19-bn");
    EXPECT_EQ(models[9].name, "densenet121");
    EXPECT_EQ(models[10].name, "efficientnet-b0");
    for (const auto& m : models) {
        EXPECT_FALSE(m.description.empty()) << m.name;
        EXPECT_EQ(m.description.find('\n'), std::string::npos) << m.name;
    }
    EXPECT_DOUBLE_EQ(models[0].default_dropout, 0.3);
    EXPECT_DOUBLE_EQ(models[1].default_dropout, 0.4);
    EXPECT_DOUBLE_EQ(models[7].default_dropout, 0.5);  // torchvision's VGG
    EXPECT_DOUBLE_EQ(models[9].default_dropout, 0.2);
    EXPECT_DOUBLE_EQ(models[10].default_dropout, 0.2);  // torchvision's B0
    EXPECT_EQ(ModelConfig{}.name, "cnn");
}

TEST(Registry, UnknownNameListsKnownNames) {
    try {
        create_model(config("resnet9"));
        FAIL() << "no exception";
    } catch (const UsageError& e) {
        EXPECT_STREQ(e.what(),
                     "unknown model 'resnet9' (known: cnn, cnn-simple, cnn-large, unet-ae, resnet18, resnet34, "
                     "resnet50, vgg19, vgg19-bn, densenet121, efficientnet-b0)");
    }
}

TEST(Registry, RejectsImpossibleConfigs) {
    auto bad = [](auto edit) {
        ModelConfig c = config("cnn-simple");
        edit(c);
        return c;
    };
    EXPECT_THROW(create_model(bad([](ModelConfig& c) { c.in_channels = 0; })), UsageError);
    EXPECT_THROW(create_model(bad([](ModelConfig& c) { c.num_outputs = 0; })), UsageError);
    EXPECT_THROW(create_model(bad([](ModelConfig& c) { c.multiclass = true; })), UsageError);  // 1 output
    EXPECT_THROW(create_model(bad([](ModelConfig& c) { c.dropout = 1.0; })), UsageError);
    EXPECT_THROW(create_model(bad([](ModelConfig& c) { c.dropout = -0.1; })), UsageError);
    EXPECT_THROW(create_model(bad([](ModelConfig& c) { c.width = 0.0; })), UsageError);
    EXPECT_THROW(create_model(bad([](ModelConfig& c) { c.pool = "mean"; })), UsageError);
    EXPECT_NO_THROW(create_model(bad([](ModelConfig& c) {
        c.multiclass = true;
        c.num_outputs = 2;
        c.dropout = 0.0;
    })));
}

TEST(Registry, ResolvesDefaultDropoutAndKeepsExplicitOne) {
    EXPECT_DOUBLE_EQ(create_model(config("cnn-simple"))->config().dropout.value(), 0.4);
    EXPECT_DOUBLE_EQ(create_model(config("cnn"))->config().dropout.value(), 0.3);
    ModelConfig c = config("cnn-large");
    c.dropout = 0.1;
    EXPECT_DOUBLE_EQ(create_model(c)->config().dropout.value(), 0.1);
}

TEST(Models, ShapesAndFeatureHeadSplitForEveryModel) {
    for (const auto& info : list_models()) {
        for (int channels : {1, 3}) {
            for (int size : {64, 128}) {
                SCOPED_TRACE(info.name + " c=" + std::to_string(channels) + " size=" + std::to_string(size));
                torch::manual_seed(1);
                auto model = create_model(config(info.name, channels, 3));
                model->eval();
                torch::NoGradGuard no_grad;
                const auto x = torch::randn({2, channels, size, size});
                const auto logits = model->forward(x);
                EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 3}));
                const auto f = model->features(x);
                ASSERT_EQ(f.dim(), 4);
                EXPECT_EQ(f.size(0), 2);
                EXPECT_LT(f.size(2), size);
                EXPECT_TRUE(torch::allclose(model->head(f), logits, 1e-5, 1e-6));
                EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
            }
        }
        const auto params = parameter_count(*create_model(config(info.name)));
        RecordProperty(info.name + "_params", std::to_string(params));
        std::printf("%-11s %8lld parameters\n", info.name.c_str(), static_cast<long long>(params));
    }
}

TEST(Models, FeatureMapResolution) {
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({1, 1, 128, 96});  // non-square works too
    auto simple = create_model(config("cnn-simple"));
    EXPECT_EQ(simple->features(x).sizes(), (std::vector<int64_t>{1, 32, 32, 24}));
    auto large = create_model(config("cnn-large"));
    EXPECT_EQ(large->features(x).sizes(), (std::vector<int64_t>{1, 256, 8, 6}));
    auto cnn = create_model(config("cnn"));
    EXPECT_EQ(cnn->features(x).sizes(), (std::vector<int64_t>{1, 256, 8, 6}));
    // Odd sizes keep their border (ceil-mode pooling).
    EXPECT_EQ(cnn->features(torch::randn({1, 1, 33, 17})).sizes(), (std::vector<int64_t>{1, 256, 3, 2}));
}

TEST(Models, ExactParameterCounts) {
    EXPECT_EQ(parameter_count(*create_model(config("cnn-simple", 1, 1))),
              conv(1, 32) + conv(32, 32) + conv(32, 32) + dense(32, 32) + dense(32, 1));
    EXPECT_EQ(parameter_count(*create_model(config("cnn-simple", 3, 4))),
              conv(3, 32) + conv(32, 32) + conv(32, 32) + dense(32, 32) + dense(32, 4));
    EXPECT_EQ(
        parameter_count(*create_model(config("cnn-large", 1, 1))),
        conv(1, 32) + conv(32, 64) + conv(64, 128) + conv(128, 128) + conv(128, 256) + dense(256, 64) + dense(64, 1));
    const int64_t cnn = conv_bn(1, 32) + conv_bn(32, 32) + conv_bn(32, 32) + conv_bn(32, 64) + conv_bn(64, 64) +
                        conv_bn(64, 128) + conv_bn(128, 128) + conv_bn(128, 256) + conv_bn(256, 256) + dense(256, 6);
    EXPECT_EQ(parameter_count(*create_model(config("cnn", 1, 6))), cnn);
    EXPECT_GT(cnn, 300'000);
    EXPECT_LT(cnn, 2'000'000);

    ModelConfig half = config("cnn", 1, 6);
    half.width = 0.5;
    EXPECT_EQ(parameter_count(*create_model(half)),
              conv_bn(1, 16) + conv_bn(16, 16) + conv_bn(16, 16) + conv_bn(16, 32) + conv_bn(32, 32) + conv_bn(32, 64) +
                  conv_bn(64, 64) + conv_bn(64, 128) + conv_bn(128, 128) + dense(128, 6));
}

TEST(Models, InitIsDeterministicAndKaiming) {
    torch::manual_seed(42);
    auto a = create_model(config("cnn"));
    torch::manual_seed(42);
    auto b = create_model(config("cnn"));
    torch::manual_seed(43);
    auto c = create_model(config("cnn"));
    const auto pa = a->named_parameters(), pb = b->named_parameters(), pc = c->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    bool any_differs = false;
    for (const auto& p : pa) {
        EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
        if (!torch::equal(p.value(), pc[p.key()])) any_differs = true;
    }
    EXPECT_TRUE(any_differs);

    // Kaiming normal, fan_out: std = sqrt(2 / (out_channels * 9)); the last 256 -> 256 conv has 590k
    // weights, so the sample std is within 1% of it. BatchNorm starts as identity.
    torch::Tensor last_conv;
    for (const auto& m : a->modules(false))
        if (auto* conv2d = m->as<torch::nn::Conv2d>()) last_conv = conv2d->weight;
    ASSERT_EQ(last_conv.sizes(), (std::vector<int64_t>{256, 256, 3, 3}));
    EXPECT_NEAR(last_conv.std().item<double>(), std::sqrt(2.0 / (256 * 9)), 0.01 * std::sqrt(2.0 / (256 * 9)));
    EXPECT_NEAR(last_conv.mean().item<double>(), 0.0, 1e-3);
    for (const auto& m : a->modules(false))
        if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
            EXPECT_TRUE(torch::equal(bn->weight, torch::ones_like(bn->weight)));
            EXPECT_TRUE(torch::equal(bn->bias, torch::zeros_like(bn->bias)));
        }
}

// Without BatchNorm (cnn-simple) convs use fan_in so the forward signal keeps its scale: the first
// conv (1 -> 32 channels, 3x3) has std sqrt(2 / 9) = 0.471, not the fan_out sqrt(2 / 288) = 0.083.
// 288 weights: the sample std is within 15% of the target with overwhelming probability.
TEST(Models, InitWithoutBatchNormUsesFanIn) {
    torch::manual_seed(42);
    auto m = create_model(config("cnn-simple"));
    torch::Tensor first;
    for (const auto& mod : m->modules(false))
        if (auto* conv2d = mod->as<torch::nn::Conv2d>()) {
            first = conv2d->weight;
            break;
        }
    ASSERT_EQ(first.sizes(), (std::vector<int64_t>{32, 1, 3, 3}));
    EXPECT_NEAR(first.std().item<double>(), std::sqrt(2.0 / 9), 0.15 * std::sqrt(2.0 / 9));
    // The output of a fresh model varies with the input (no dead head).
    torch::NoGradGuard ng;
    m->eval();
    auto x = torch::rand({8, 1, 64, 64});
    auto out = m->forward(x);
    EXPECT_GT(out.std().item<double>(), 1e-4);
}

TEST(Models, Probabilities) {
    const auto logits = torch::tensor({{0.0f, std::log(3.0f)}, {std::log(2.0f), 0.0f}});
    const auto sig = probabilities(logits, false);
    EXPECT_NEAR(sig[0][0].item<float>(), 0.5f, 1e-6);
    EXPECT_NEAR(sig[0][1].item<float>(), 0.75f, 1e-6);
    EXPECT_NEAR(sig[1][0].item<float>(), 2.0f / 3.0f, 1e-6);
    const auto soft = probabilities(logits, true);
    EXPECT_NEAR(soft[0][0].item<float>(), 0.25f, 1e-6);
    EXPECT_NEAR(soft[0][1].item<float>(), 0.75f, 1e-6);
    EXPECT_NEAR(soft[1][0].item<float>(), 2.0f / 3.0f, 1e-6);
    EXPECT_NEAR(soft[1][1].item<float>(), 1.0f / 3.0f, 1e-6);
    EXPECT_THROW(probabilities(torch::zeros({3}), false), UsageError);
}

TEST(Models, GlobalPoolingByHand) {
    // One 2-channel 2x2 map: channel 0 = {1, 2, 3, 6}, channel 1 = {0, 0, 0, 8}.
    const auto f = torch::tensor({1.f, 2.f, 3.f, 6.f, 0.f, 0.f, 0.f, 8.f}).view({1, 2, 2, 2});
    EXPECT_TRUE(torch::equal(global_pool(f, "avg"), torch::tensor({{3.f, 2.f}})));
    EXPECT_TRUE(torch::equal(global_pool(f, "max"), torch::tensor({{6.f, 8.f}})));
    EXPECT_TRUE(torch::equal(global_pool(f, "avgmax"), torch::tensor({{3.f, 2.f, 6.f, 8.f}})));
    EXPECT_EQ(pooled_channels(256, "avg"), 256);
    EXPECT_EQ(pooled_channels(256, "max"), 256);
    EXPECT_EQ(pooled_channels(256, "avgmax"), 512);
}

// The pooling choice reaches every classifier's head: avgmax doubles the inputs of the first dense
// layer, and a single bright pixel moves the max-pooled logits, not the averaged ones, by its full size.
TEST(Models, PoolingChoiceInEveryHead) {
    for (const auto& info : list_models()) {
        SCOPED_TRACE(info.name);
        ModelConfig c = config(info.name, 1, 2);
        if (info.name.rfind("vgg", 0) == 0) {  // flattens a 7x7 map, as torchvision: only avg (Vgg tests)
            c.pool = "max";
            EXPECT_THROW(create_model(c), UsageError);
            continue;
        }
        const int64_t avg_params = parameter_count(*create_model(c));
        c.pool = "avgmax";
        torch::manual_seed(3);
        auto both = create_model(c);
        const auto f = both->features(torch::zeros({1, 1, 64, 64}));
        const int64_t first_dense_outputs = info.name == "cnn-simple" ? 32 : info.name == "cnn-large" ? 64 : 2;
        EXPECT_EQ(parameter_count(*both) - avg_params, f.size(1) * first_dense_outputs);
        both->eval();
        torch::NoGradGuard no_grad;
        EXPECT_EQ(both->forward(torch::randn({2, 1, 64, 64})).sizes(), (std::vector<int64_t>{2, 2}));
        c.pool = "max";
        EXPECT_EQ(parameter_count(*create_model(c)), avg_params);
    }
    // On a fixed feature map: a spike of 100 in one of 16x16 cells changes the avg pool by 100/256
    // and the max pool by 100.
    auto spike = torch::zeros({1, 1, 16, 16});
    spike[0][0][5][7] = 100.f;
    EXPECT_FLOAT_EQ(global_pool(spike, "avg").item<float>(), 100.f / 256.f);
    EXPECT_FLOAT_EQ(global_pool(spike, "max").item<float>(), 100.f);
}

TEST(Models, ConfigJsonRoundTrip) {
    ModelConfig c = config("cnn-large", 3, 5);
    c.multiclass = true;
    c.width = 0.5;
    const auto j = model_config_to_json(c);
    EXPECT_EQ(j.at("name"), "cnn-large");
    EXPECT_TRUE(j.at("dropout").is_null());
    const auto back = model_config_from_json(j);
    EXPECT_EQ(back.name, "cnn-large");
    EXPECT_EQ(back.in_channels, 3);
    EXPECT_EQ(back.num_outputs, 5);
    EXPECT_TRUE(back.multiclass);
    EXPECT_FALSE(back.dropout.has_value());
    EXPECT_DOUBLE_EQ(back.width, 0.5);
    EXPECT_EQ(back.pool, "avg");

    c.pool = "avgmax";
    EXPECT_EQ(model_config_from_json(model_config_to_json(c)).pool, "avgmax");
    nlohmann::json old = model_config_to_json(c);
    old.erase("pool");  // files written before the option: average pooling
    EXPECT_EQ(model_config_from_json(old).pool, "avg");
    EXPECT_THROW(model_config_from_json(nlohmann::json{{"pool", 2}}), UsageError);
    c.dropout = 0.25;
    EXPECT_DOUBLE_EQ(model_config_from_json(model_config_to_json(c)).dropout.value(), 0.25);
    EXPECT_EQ(model_config_from_json(nlohmann::json::object()).name, "cnn");  // defaults
    EXPECT_THROW(model_config_from_json(nlohmann::json{{"in_channels", "three"}}), UsageError);
    EXPECT_THROW(model_config_from_json(nlohmann::json::array()), UsageError);
}

// Each model fits 8 random 16x16 images (32x32 for DenseNet) with random labels (memorisation) in a few Adam
// steps: gradients reach every layer and the head is wired to the loss.
TEST(Models, EveryModelCanFitATinyBatch) {
    for (const auto& info : list_models()) {
        if (info.name.rfind("vgg", 0) == 0) continue;  // minutes for 140M parameters: Vgg.LearnsFromATinyBatch
        SCOPED_TRACE(info.name);
        torch::manual_seed(3);
        ModelConfig c = config(info.name, 1, 2);
        c.dropout = 0.0;
        auto model = create_model(c);
        model->train();
        // DenseNet pools 16x16 down to nothing (torchvision's minimum size for it is 29).
        const int size = info.name.rfind("densenet", 0) == 0 ? 32 : 16;
        const auto x = torch::randn({8, 1, size, size});
        const auto y = torch::randint(0, 2, {8, 2}).to(torch::kFloat32);
        torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(3e-3));
        double first = 0, last = 0;
        for (int step = 0; step < 40; ++step) {
            opt.zero_grad();
            const auto loss = torch::binary_cross_entropy_with_logits(model->forward(x), y);
            loss.backward();
            opt.step();
            (step == 0 ? first : last) = loss.item<double>();
        }
        EXPECT_GT(first, 0.5);
        EXPECT_LT(last, 0.2);
    }
}

// The torchvision architectures (issue 27; their names and logits against torchvision itself are in
// test_parity.cpp). Parameter counts of torchvision's models with 3 input channels and num_classes=1, from
// /usr/bin/python3 (torch 1.13, torchvision 0.14):
//   sum(p.numel() for p in torchvision.models.ARCH(num_classes=1).parameters())
namespace {

constexpr int64_t kVgg19Params = 139'574'337;
constexpr int64_t kVgg19BnParams = 139'585'345;
constexpr int64_t kDenseNet121Params = 6'954'881;
constexpr int64_t kEfficientNetB0Params = 4'008'829;

// Logits N x 4 for one- and three-channel input at 64 and 96 pixels, forward == head(features), a feature
// map of `channels` x size/stride, torchvision's parameter count (3 channels, 1 output), and the head's
// parameters (`head_params` of them) under head_modules().
// `one_model`: the VGGs (140M parameters, seconds to build each) check everything on the one three-channel,
// one-output model; the one-channel adaptation of their first conv is covered by test_parity.cpp.
void expect_torchvision_arch(const std::string& name, int64_t torchvision_params, int64_t channels, int64_t stride,
                             int64_t head_params, bool one_model = false) {
    const int outputs = one_model ? 1 : 4;
    std::shared_ptr<ClassifierImpl> checked;
    for (int in : {1, 3}) {
        if (one_model && in == 1) continue;
        torch::manual_seed(1);
        auto model = create_model(config(name, in, outputs));
        if (one_model) checked = model;
        model->eval();
        torch::NoGradGuard no_grad;
        for (int size : {64, 96}) {
            SCOPED_TRACE(name + " c=" + std::to_string(in) + " size=" + std::to_string(size));
            const auto x = torch::randn({2, in, size, size});
            const auto logits = model->forward(x);
            EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, outputs}));
            const auto f = model->features(x);
            EXPECT_EQ(f.sizes(), (std::vector<int64_t>{2, channels, size / stride, size / stride}));
            EXPECT_TRUE(torch::allclose(model->head(f), logits, 1e-5, 1e-6));
            EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
        }
    }
    auto model = checked ? checked : create_model(config(name, 3, 1));
    EXPECT_EQ(parameter_count(*model), torchvision_params) << name;
    int64_t in_head = 0;
    for (const auto& p : model->named_parameters())
        if (is_head_parameter(*model, p.key())) in_head += p.value().numel();
    EXPECT_EQ(in_head, head_params) << name;
    const auto modules = model->named_modules();
    for (const auto& m : model->head_modules()) EXPECT_TRUE(modules.contains(m)) << name << ": " << m;
}

}  // namespace

TEST(Vgg, ShapesParameterCountsAndHead) {
    const int64_t classifier = dense(512 * 7 * 7, 4096) + dense(4096, 4096) + dense(4096, 1);
    expect_torchvision_arch("vgg19", kVgg19Params, 512, 16, classifier, true);
    expect_torchvision_arch("vgg19-bn", kVgg19BnParams, 512, 16, classifier, true);
}

TEST(Vgg, TorchvisionIndicesDropoutsAndPool) {
    ModelConfig c = config("vgg19-bn", 3, 1);
    c.dropout = 0.3;
    auto model = create_model(c);
    const auto params = model->named_parameters();
    // Conv, BatchNorm, ReLU per layer and a MaxPool per block: features.49 is the 16th conv, features.52 the
    // last MaxPool.
    EXPECT_EQ(params["features.49.weight"].sizes(), (std::vector<int64_t>{512, 512, 3, 3}));
    EXPECT_TRUE(params.contains("features.50.bias"));
    EXPECT_FALSE(params.contains("features.52.weight"));
    EXPECT_EQ(params["classifier.6.weight"].sizes(), (std::vector<int64_t>{1, 4096}));
    const auto modules = model->named_modules();
    EXPECT_DOUBLE_EQ(modules["classifier.2"]->as<torch::nn::Dropout>()->options.p(), 0.5);  // torchvision's
    EXPECT_DOUBLE_EQ(modules["classifier.5"]->as<torch::nn::Dropout>()->options.p(), 0.3);  // ours
    EXPECT_TRUE(create_model(config("vgg19"))->named_parameters().contains("features.34.weight"));  // no BN

    c.pool = "avgmax";
    try {
        create_model(c);
        FAIL() << "no exception";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("pool must be avg"), std::string::npos) << e.what();
    }
    c.pool = "avg";
    c.width = 0.5;
    EXPECT_THROW(create_model(c), UsageError);
}

// What Models.EveryModelCanFitATinyBatch checks, in seconds: its 40 Adam steps on 140M parameters take
// minutes, and at its rate (3e-3) VGG's loss does not come down. In evaluation mode (no dropout: classifier.2
// keeps 0.5 in training, which makes the loss noisy) every parameter gets a gradient, and each of a few
// small steps lowers the loss. vgg19-bn only (vgg19 is the same class without its BatchNorms): each
// model costs seconds to build and step.
TEST(Vgg, LearnsFromATinyBatch) {
    for (const std::string name : {"vgg19-bn"}) {
        SCOPED_TRACE(name);
        torch::manual_seed(3);
        ModelConfig c = config(name, 1, 2);
        c.dropout = 0.0;
        auto model = create_model(c);
        model->eval();
        const auto x = torch::randn({8, 1, 32, 32});
        const auto y = torch::randint(0, 2, {8, 2}).to(torch::kFloat32);
        // Plain SGD: Adam's two moments would add 1.1 GB and seconds per step for the same question.
        torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(1e-3));
        std::vector<double> losses;
        for (int step = 0; step < 3; ++step) {
            opt.zero_grad();
            const auto loss = torch::binary_cross_entropy_with_logits(model->forward(x), y);
            loss.backward();
            if (step == 0) {
                for (const auto& p : model->named_parameters()) {
                    ASSERT_TRUE(p.value().grad().defined()) << p.key();
                    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
                }
            }
            opt.step();
            losses.push_back(loss.item<double>());
        }
        // Measured over 6 steps: vgg19 0.698 -> 0.611, vgg19-bn 0.693 -> 0.679 (its BatchNorms start as the
        // identity); over 3 the fall is smaller but strict at each step.
        for (size_t i = 1; i < losses.size(); ++i) EXPECT_LT(losses[i], losses[i - 1]) << "step " << i;
    }
}

TEST(DenseNet, ShapesParameterCountsAndHead) {
    expect_torchvision_arch("densenet121", kDenseNet121Params, 1024, 32, dense(1024, 1));
    auto model = create_model(config("densenet121", 3, 1));
    const auto params = model->named_parameters();
    EXPECT_EQ(params["features.denseblock4.denselayer16.conv2.weight"].sizes(), (std::vector<int64_t>{32, 128, 3, 3}));
    EXPECT_EQ(params["features.transition3.conv.weight"].sizes(), (std::vector<int64_t>{512, 1024, 1, 1}));
    EXPECT_TRUE(model->named_buffers().contains("features.norm5.running_var"));
    EXPECT_DOUBLE_EQ(model->named_modules()["dropout"]->as<torch::nn::Dropout>()->options.p(), 0.2);
    ModelConfig c = config("densenet121", 1, 2);
    c.pool = "avgmax";
    EXPECT_EQ(create_model(c)->named_parameters()["classifier.weight"].sizes(), (std::vector<int64_t>{2, 2048}));
}

TEST(EfficientNet, ShapesParameterCountsAndHead) {
    expect_torchvision_arch("efficientnet-b0", kEfficientNetB0Params, 1280, 32, dense(1280, 1));
    auto model = create_model(config("efficientnet-b0", 3, 1));
    const auto params = model->named_parameters();
    // Stage 1 has no expansion conv: block.0 is the depthwise conv; later stages expand first.
    EXPECT_EQ(params["features.1.0.block.0.0.weight"].sizes(), (std::vector<int64_t>{32, 1, 3, 3}));
    EXPECT_EQ(params["features.1.0.block.1.fc1.bias"].sizes(), (std::vector<int64_t>{8}));
    EXPECT_EQ(params["features.6.3.block.0.0.weight"].sizes(), (std::vector<int64_t>{1152, 192, 1, 1}));
    EXPECT_EQ(params["features.6.3.block.2.fc2.weight"].sizes(), (std::vector<int64_t>{1152, 48, 1, 1}));
    EXPECT_EQ(params["features.8.0.weight"].sizes(), (std::vector<int64_t>{1280, 320, 1, 1}));
    EXPECT_EQ(params["classifier.1.weight"].sizes(), (std::vector<int64_t>{1, 1280}));
    for (const auto& m : model->modules(false))
        if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
            EXPECT_DOUBLE_EQ(bn->options.eps(), 1e-5);  // torchvision's B0 (B5-B7 use 1e-3)
            EXPECT_DOUBLE_EQ(bn->options.momentum().value(), 0.1);
        }
}

// Stochastic depth drops residual branches in training only, drawing from the torch RNG.
TEST(EfficientNet, StochasticDepthInTrainingOnly) {
    ModelConfig c = config("efficientnet-b0", 1, 2);
    c.dropout = 0.0;
    torch::manual_seed(1);
    auto model = create_model(c);
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({4, 1, 32, 32});
    model->train();
    torch::manual_seed(9);
    const auto a = model->forward(x);
    torch::manual_seed(9);
    EXPECT_TRUE(torch::equal(model->forward(x), a));
    torch::manual_seed(10);
    EXPECT_FALSE(torch::allclose(model->forward(x), a));
    model->eval();
    torch::manual_seed(11);
    const auto e = model->forward(x);
    torch::manual_seed(12);
    EXPECT_TRUE(torch::equal(model->forward(x), e));
}

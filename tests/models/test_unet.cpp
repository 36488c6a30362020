// Segmentation models: the registry, output shapes for every architecture and depth, exact
// parameter counts of the U-Net, input checks, and a tiny overfit (gradients reach every layer).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/models/attention_unet.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/seg_loss.hpp"
#include "hemoscan/models/seg_registry.hpp"
#include "hemoscan/models/unet.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

SegModelConfig seg_config(const std::string& name, int depth = 2, int base = 4, int in = 1, int classes = 2) {
    SegModelConfig c;
    c.name = name;
    c.depth = depth;
    c.base_width = base;
    c.in_channels = in;
    c.num_classes = classes;
    return c;
}

// Parameter counts by hand: DoubleConv(a -> b) = two 3x3 convs without bias + two BatchNorms.
int64_t double_conv(int64_t a, int64_t b) { return 9 * a * b + 2 * b + 9 * b * b + 2 * b; }
int64_t up_conv(int64_t a, int64_t b) { return 4 * a * b + b; }  // ConvTranspose2d 2x2 with bias
int64_t head(int64_t a, int64_t k) { return a * k + k; }        // Conv2d 1x1 with bias

int64_t unet_params(int depth, int64_t w, int64_t in, int64_t k) {
    int64_t n = 0;
    for (int l = 0; l < depth; ++l) n += double_conv(l == 0 ? in : w << (l - 1), w << l);
    n += double_conv(w << (depth - 1), w << depth);
    for (int l = 0; l < depth; ++l) n += up_conv(w << (l + 1), w << l) + double_conv(2 * (w << l), w << l);
    return n + head(w, k);
}

// A bright disc of random centre/radius on a noisy background; mask = the disc.
void disc_batch(int n, int size, torch::Tensor& images, torch::Tensor& masks) {
    images = torch::rand({n, 1, size, size}) * 0.3;
    masks = torch::zeros({n, size, size}, torch::kInt64);
    const auto yy = torch::arange(size).view({size, 1}).to(torch::kFloat32);
    const auto xx = torch::arange(size).view({1, size}).to(torch::kFloat32);
    for (int i = 0; i < n; ++i) {
        const double cx = 8 + torch::rand({1}).item<double>() * (size - 16);
        const double cy = 8 + torch::rand({1}).item<double>() * (size - 16);
        const double r = 3 + torch::rand({1}).item<double>() * 4;
        const auto inside = ((xx - cx).pow(2) + (yy - cy).pow(2)) <= r * r;
        masks[i] = inside.to(torch::kInt64);
        images[i][0] += inside.to(torch::kFloat32) * 0.6;
    }
}


}  // namespace

TEST(SegRegistry, ListsTheUNetFamilyDefaultFirst) {
    const auto models = list_seg_models();
    ASSERT_EQ(models.size(), 5u);
    EXPECT_EQ(models[0].name, "unet");
    EXPECT_EQ(models[1].name, "resunet");
    EXPECT_EQ(models[2].name, "attention-unet");
    EXPECT_EQ(models[3].name, "resnet34-unet");  // torchvision ResNet encoders (issue 27, test_resnet_unet.cpp)
    EXPECT_EQ(models[3].encoder, "resnet34");
    EXPECT_EQ(models[4].name, "resnet18-unet");
    for (const auto& m : models) {
        EXPECT_TRUE(is_seg_model(m.name));
        EXPECT_FALSE(m.description.empty());
        EXPECT_EQ(m.description.find('\n'), std::string::npos);
    }
    EXPECT_FALSE(is_seg_model("cnn"));
    EXPECT_FALSE(is_seg_model("unet-ae"));  // a classifier
    EXPECT_EQ(SegModelConfig{}.name, "unet");
}

TEST(SegRegistry, RejectsUnknownNamesAndImpossibleConfigs) {
    try {
        create_segmenter(seg_config("vnet"));
        FAIL() << "no exception";
    } catch (const UsageError& e) {
        EXPECT_STREQ(e.what(), "unknown segmentation model 'vnet' (known: unet, resunet, attention-unet, resnet34-unet, resnet18-unet)");
    }
    auto bad = [](auto edit) {
        SegModelConfig c = seg_config("unet");
        edit(c);
        return c;
    };
    EXPECT_THROW(create_segmenter(bad([](SegModelConfig& c) { c.num_classes = 1; })), UsageError);
    EXPECT_THROW(create_segmenter(bad([](SegModelConfig& c) { c.depth = 0; })), UsageError);
    EXPECT_THROW(create_segmenter(bad([](SegModelConfig& c) { c.depth = 7; })), UsageError);
    EXPECT_THROW(create_segmenter(bad([](SegModelConfig& c) { c.base_width = 3; })), UsageError);
    EXPECT_THROW(create_segmenter(bad([](SegModelConfig& c) { c.in_channels = 0; })), UsageError);
    EXPECT_THROW(create_segmenter(bad([](SegModelConfig& c) { c.dropout = 1.0; })), UsageError);
    EXPECT_THROW(create_segmenter(bad([](SegModelConfig& c) { c.dropout = -0.1; })), UsageError);
    EXPECT_NO_THROW(create_segmenter(bad([](SegModelConfig& c) { c.dropout = 0.5; })));
}

TEST(SegRegistry, ConfigJsonRoundTripAndDefaults) {
    SegModelConfig c = seg_config("attention-unet", 3, 8, 3, 6);
    c.dropout = 0.25;
    const auto back = seg_model_config_from_json(seg_model_config_to_json(c));
    EXPECT_EQ(back.name, "attention-unet");
    EXPECT_EQ(back.depth, 3);
    EXPECT_EQ(back.base_width, 8);
    EXPECT_EQ(back.in_channels, 3);
    EXPECT_EQ(back.num_classes, 6);
    EXPECT_DOUBLE_EQ(back.dropout, 0.25);
    const auto defaults = seg_model_config_from_json(nlohmann::json::object());
    EXPECT_EQ(defaults.name, "unet");
    EXPECT_EQ(defaults.depth, 4);
    EXPECT_EQ(defaults.base_width, 32);
    EXPECT_THROW(seg_model_config_from_json(nlohmann::json{{"depth", "four"}}), UsageError);
    EXPECT_THROW(seg_model_config_from_json(nlohmann::json::array()), UsageError);
}

TEST(SegModels, OutputShapeForEveryArchitectureAndDepth) {
    torch::NoGradGuard no_grad;
    for (const auto& info : list_seg_models()) {
        if (info.fixed_depth > 0) continue;  // the ResNet U-Nets: five levels always (test_resnet_unet.cpp)
        for (int depth = 1; depth <= 4; ++depth) {
            SCOPED_TRACE(info.name + " depth " + std::to_string(depth));
            torch::manual_seed(1);
            auto model = create_segmenter(seg_config(info.name, depth, 4, 3, 5));
            EXPECT_TRUE(model->is_training());
            EXPECT_EQ(model->config().name, info.name);
            model->eval();
            const int64_t h = 3 << depth, w = 2 << depth;  // non-square, smallest-but-one sizes
            const auto y = model->forward(torch::randn({2, 3, h, w}));
            EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 5, h, w}));
            EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
        }
    }
}

TEST(SegModels, InputNotDivisibleByTwoToTheDepthIsAUsageError) {
    for (const auto& info : list_seg_models()) {
        if (info.fixed_depth > 0) continue;
        SCOPED_TRACE(info.name);
        auto model = create_segmenter(seg_config(info.name, 3, 4, 1, 2));
        model->eval();
        torch::NoGradGuard no_grad;
        EXPECT_NO_THROW(model->forward(torch::randn({1, 1, 16, 24})));
        // 20 is not a multiple of 8
        test::expect_usage_error([&] { model->forward(torch::randn({1, 1, 20, 24})); }, {"divisible by 2^depth = 8"});
        EXPECT_THROW(model->forward(torch::randn({1, 2, 16, 16})), UsageError);  // wrong channels
        EXPECT_THROW(model->forward(torch::randn({1, 16, 16})), UsageError);     // no batch axis
    }
}

TEST(SegModels, ExactUNetParameterCounts) {
    // Depth 2, base 4, 1 channel in, 2 classes, term by term:
    //   encoder 196 + 896, bottleneck 3520, up 520 + 132, decoder 1760 + 448, head 10.
    EXPECT_EQ(double_conv(1, 4), 196);
    EXPECT_EQ(parameter_count(*create_segmenter(seg_config("unet", 2, 4, 1, 2))), 7482);
    EXPECT_EQ(unet_params(2, 4, 1, 2), 7482);
    EXPECT_EQ(parameter_count(*create_segmenter(seg_config("unet", 3, 8, 3, 4))), unet_params(3, 8, 3, 4));
    // The documented default size (models/unet.hpp).
    EXPECT_EQ(parameter_count(*create_segmenter(seg_config("unet", 4, 32, 3, 2))), 7763074);
    EXPECT_EQ(unet_params(4, 32, 3, 2), 7763074);
    // Dropout adds no parameters.
    SegModelConfig d = seg_config("unet", 2, 4, 1, 2);
    d.dropout = 0.3;
    EXPECT_EQ(parameter_count(*create_segmenter(d)), 7482);
}

TEST(SegModels, ResidualAndAttentionParameterCounts) {
    // ResUNet: DoubleConv -> residual block, the same two convs + BNs, plus a 1x1 conv + BN
    // projection where channels change (every block here: in != out everywhere).
    auto proj = [](int64_t a, int64_t b) { return a * b + 2 * b; };
    const int64_t res = unet_params(2, 4, 1, 2) + proj(1, 4) + proj(4, 8) + proj(8, 16) + proj(16, 8) + proj(8, 4);
    EXPECT_EQ(parameter_count(*create_segmenter(seg_config("resunet", 2, 4, 1, 2))), res);
    // Attention gate at level l (c = 4 * 2^l skip and gate channels, F = c/2): two 1x1 convs c -> F
    // with BNs, psi 1x1 conv F -> 1 with BN(1).
    auto gate = [](int64_t c) { return 2 * (c * (c / 2) + 2 * (c / 2)) + (c / 2) + 2; };
    EXPECT_EQ(parameter_count(*create_segmenter(seg_config("attention-unet", 2, 4, 1, 2))),
              unet_params(2, 4, 1, 2) + gate(4) + gate(8));
}

TEST(SegModels, WeightInitIsKaimingFanOutWithZeroBias) {
    torch::manual_seed(2);
    auto model = create_segmenter(seg_config("unet", 2, 16, 1, 2));
    for (const auto& p : model->named_parameters()) {
        const std::string key = p.key();
        if (key.find("bias") != std::string::npos && key.find("bn") == std::string::npos) {
            EXPECT_EQ(p.value().abs().max().item<float>(), 0.f) << key;
        }
    }
    // A transposed conv 64 -> 32, kernel 2: weight 64 x 32 x 2 x 2, PyTorch's fan_out = 64 * 4.
    const auto up = model->named_parameters()["up.1.weight"];
    ASSERT_EQ(up.sizes(), (std::vector<int64_t>{64, 32, 2, 2}));
    EXPECT_NEAR(up.std().item<double>(), std::sqrt(2.0 / (64 * 4)), 0.01);
    const auto conv = model->named_parameters()["encoder.1.conv1.weight"];  // 32 x 16 x 3 x 3, fan_out 288
    EXPECT_NEAR(conv.std().item<double>(), std::sqrt(2.0 / 288), 0.01);
    EXPECT_EQ(model->named_parameters()["decoder.0.bn2.weight"].min().item<float>(), 1.f);
}

TEST(SegModels, AttentionGateWeighsTheSkip) {
    torch::manual_seed(4);
    AttentionGate gate(8, 8);
    gate->eval();
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({2, 8, 6, 6}), g = torch::randn({2, 8, 6, 6});
    const auto a = gate->attention(x, g);
    EXPECT_EQ(a.sizes(), (std::vector<int64_t>{2, 1, 6, 6}));
    EXPECT_GE(a.min().item<float>(), 0.f);
    EXPECT_LE(a.max().item<float>(), 1.f);
    EXPECT_TRUE(torch::allclose(gate->forward(x, g), x * a));
}

// Gradients flow through every part: a depth-2 U-Net learns bright discs on 32x32 noise.
TEST(SegModels, UNetOverfitsBrightDiscs) {
    torch::manual_seed(7);
    torch::Tensor images, masks;
    disc_batch(8, 32, images, masks);
    auto model = create_segmenter(seg_config("unet", 2, 8, 1, 2));
    torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-2));
    model->train();
    double first = 0, last = 0;
    for (int step = 0; step < 40; ++step) {
        opt.zero_grad();
        auto loss = seg_loss(model->forward(images), masks, SegLoss::CeDice);
        loss.backward();
        opt.step();
        (step == 0 ? first : last) = loss.item<double>();
    }
    EXPECT_LT(last, first);
    model->eval();
    torch::NoGradGuard no_grad;
    const auto pred = model->forward(images).argmax(1);
    const double tp = (pred * masks).sum().item<double>();
    const double dice = 2 * tp / (pred.sum().item<double>() + masks.sum().item<double>());
    EXPECT_GT(dice, 0.9) << "loss " << first << " -> " << last;
    std::printf("dice %.4f loss %.4f -> %.4f\n", dice, first, last);
}

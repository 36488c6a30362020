// The ResNet-34 / ResNet-18 U-Net (issue 27): torchvision's ResNet as the encoder (its weights load under
// "encoder."), the segmentation_models_pytorch decoder layout, five levels.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/pretrained.hpp"
#include "hemoscan/models/registry.hpp"
#include "hemoscan/models/seg_registry.hpp"
#include "hemoscan/models/segmenter.hpp"

using namespace hemoscan;

namespace {
SegModelConfig seg_config(const std::string& name, int in_channels) {
    SegModelConfig c;
    c.name = name;
    c.in_channels = in_channels;
    c.num_classes = 3;
    return c;
}
}  // namespace

TEST(ResNetUNet, ShapesNamesAndLevels) {
    torch::manual_seed(0);
    for (const char* name : {"resnet34-unet", "resnet18-unet"}) {
        SCOPED_TRACE(name);
        const SegModelInfo info = seg_model_info(name);
        EXPECT_EQ(info.fixed_depth, 5);
        auto m = create_segmenter(seg_config(name, 1));
        EXPECT_EQ(m->config().depth, 5);  // whatever `depth` asked: the ResNet downsamples five times
        m->eval();
        torch::NoGradGuard ng;
        for (int size : {64, 96}) {
            EXPECT_EQ(m->forward(torch::randn({2, 1, size, size})).sizes(), (std::vector<int64_t>{2, 3, size, size}));
        }
        EXPECT_THROW(m->forward(torch::randn({1, 1, 48, 48})), UsageError);  // not divisible by 32
        ASSERT_NE(m->encoder(), nullptr);
        const auto params = m->named_parameters();
        EXPECT_NE(params.find("encoder.layer4.1.conv2.weight"), nullptr);
        EXPECT_EQ(params.find("encoder.fc.weight"), nullptr);  // the classifier head is dropped
        EXPECT_NE(params.find("decoder.4.conv2.weight"), nullptr);
    }
    // Parameter counts (1 input channel, 2 classes): torchvision's resnet34 / resnet18 (21,797,672 /
    // 11,689,512) without fc (513,000) and with a one-channel conv1 (-6,272), plus the decoder: DoubleConv
    // a->b = 9ab + 9b^2 + 4b for 768->256, 384->128, 192->64, 128->32, 32->16 (3,151,552), plus the 3x3
    // head 16->2 (290).
    SegModelConfig c = seg_config("resnet34-unet", 1);
    c.num_classes = 2;
    EXPECT_EQ(parameter_count(*create_segmenter(c)), 21797672 - 513000 - 6272 + 3151552 + 290);
    c.name = "resnet18-unet";
    EXPECT_EQ(parameter_count(*create_segmenter(c)), 11689512 - 513000 - 6272 + 3151552 + 290);
    // Models without an encoder say so.
    EXPECT_EQ(create_segmenter(seg_config("unet", 1))->encoder(), nullptr);
    EXPECT_TRUE(seg_model_info("unet").encoder.empty());
}

// A torchvision resnet34 state dict (an ImageNet-shaped file: 3 channels, 1000 classes) fills the whole
// encoder; only its fc is left over, and the RGB first conv is summed for one channel.
TEST(ResNetUNet, TorchvisionResNetWeightsFillTheEncoder) {
    torch::manual_seed(1);
    ModelConfig rc;
    rc.name = "resnet34";
    rc.in_channels = 3;
    rc.num_outputs = 1000;
    auto resnet = create_model(rc);
    const StateDict sd = state_dict_of(*resnet);
    auto m = create_segmenter(seg_config("resnet34-unet", 1));
    const WeightReport r = load_state_dict(*m->encoder(), sd);
    EXPECT_TRUE(r.fresh.empty()) << r.to_json().dump();
    EXPECT_EQ(r.unused, (std::vector<std::string>{"fc.bias", "fc.weight"}));
    EXPECT_EQ(r.adapted, std::vector<std::string>{"conv1.weight"});
    EXPECT_TRUE(torch::equal(m->named_parameters()["encoder.layer3.5.bn2.weight"], sd.at("layer3.5.bn2.weight")));
    EXPECT_TRUE(torch::allclose(m->named_parameters()["encoder.conv1.weight"], sd.at("conv1.weight").sum(1, true)));
}

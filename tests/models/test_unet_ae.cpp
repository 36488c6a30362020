// The unet-ae classifier: a registered classifier with U-Net encoder features and a skip-free
// decoder for reconstruction.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/models/unet_ae.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

ModelConfig ae_config(int in = 1, int outputs = 2, double width = 0.5) {
    ModelConfig c;
    c.name = "unet-ae";
    c.in_channels = in;
    c.num_outputs = outputs;
    c.width = width;
    return c;
}

int64_t ae_double_conv(int64_t a, int64_t b) { return 9 * a * b + 9 * b * b + 4 * b; }

}  // namespace

TEST(UNetAe, IsARegisteredClassifier) {
    bool found = false;
    for (const auto& m : list_models()) found = found || m.name == "unet-ae";
    EXPECT_TRUE(found);
    auto model = create_model(ae_config());
    EXPECT_DOUBLE_EQ(model->config().dropout.value(), 0.3);
    EXPECT_NE(dynamic_cast<UNetAutoencoderImpl*>(model.get()), nullptr);
}

TEST(UNetAe, ShapesOfFeaturesLogitsAndReconstruction) {
    torch::manual_seed(1);
    auto model = create_model(ae_config(3, 4, 1.0));
    model->eval();
    auto& ae = dynamic_cast<UNetAutoencoderImpl&>(*model);
    torch::NoGradGuard no_grad;
    const auto x = torch::rand({2, 3, 64, 48});
    EXPECT_EQ(model->features(x).sizes(), (std::vector<int64_t>{2, 256, 4, 3}));
    EXPECT_EQ(model->forward(x).sizes(), (std::vector<int64_t>{2, 4}));
    const auto r = ae.reconstruct(x);
    EXPECT_EQ(r.sizes(), x.sizes());
    EXPECT_GE(r.min().item<float>(), 0.f);
    EXPECT_LE(r.max().item<float>(), 1.f);
    // Sizes that are not multiples of 16: ceil-mode pools, the reconstruction is cropped back.
    const auto odd = torch::rand({1, 3, 37, 21});
    EXPECT_EQ(model->features(odd).sizes(), (std::vector<int64_t>{1, 256, 3, 2}));
    EXPECT_EQ(ae.reconstruct(odd).sizes(), odd.sizes());
    EXPECT_THROW(ae.reconstruct(torch::rand({1, 1, 32, 32})), UsageError);
}

TEST(UNetAe, ExactParameterCount) {
    // Width 1, 1 channel, 2 outputs: encoder 16-32-64-128, bottleneck 256, decoder (transposed conv
    // + DoubleConv(c -> c)) per level, 1x1 out conv 16 -> 1, linear 256 -> 2.
    int64_t n = ae_double_conv(1, 16) + ae_double_conv(16, 32) + ae_double_conv(32, 64) + ae_double_conv(64, 128) +
                ae_double_conv(128, 256);
    for (int64_t c : {16, 32, 64, 128}) n += 4 * (2 * c) * c + c + ae_double_conv(c, c);
    n += 16 * 1 + 1 + 256 * 2 + 2;
    auto model = create_model(ae_config(1, 2, 1.0));
    EXPECT_EQ(parameter_count(*model), n);
    // Reconstruction trains everything but the linear head.
    int64_t ae = 0;
    for (const auto& p : dynamic_cast<UNetAutoencoderImpl&>(*model).autoencoder_parameters()) ae += p.numel();
    EXPECT_EQ(ae, n - (256 * 2 + 2));
}

TEST(UNetAe, DecoderIsSavedWithTheModel) {
    test::TempDir dir;
    torch::manual_seed(2);
    auto model = create_model(ae_config());
    model->eval();
    save_model(dir / "ae.pt", *model);
    auto loaded = load_model(dir / "ae.pt");
    torch::NoGradGuard no_grad;
    const auto x = torch::rand({1, 1, 32, 32});
    EXPECT_TRUE(torch::equal(dynamic_cast<UNetAutoencoderImpl&>(*model).reconstruct(x),
                             dynamic_cast<UNetAutoencoderImpl&>(*loaded.model).reconstruct(x)));
    EXPECT_TRUE(torch::equal(model->forward(x), loaded.model->forward(x)));
}

// `pretrained` (issue 27): a PyTorch state dict mapped onto a model by name; torchvision-style file
// names are checked against their SHA-256; the weights of another architecture are refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/pretrained.hpp"
#include "hemoscan/models/registry.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/train/trainer.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"
#include "train/optimizer.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {
std::shared_ptr<ClassifierImpl> model_named(const std::string& name, int in_channels, int outputs) {
    ModelConfig c;
    c.name = name;
    c.in_channels = in_channels;
    c.num_outputs = outputs;
    return create_model(c);
}
}  // namespace

TEST(Pretrained, MapsByNameChecksHashesRefusesOtherArchitectures) {
    test::TempDir d;
    torch::manual_seed(1);
    auto source = model_named("resnet18", 3, 1000);  // an ImageNet-shaped file
    write_safetensors(d / "weights.safetensors", state_dict_of(*source));

    torch::manual_seed(2);
    auto target = model_named("resnet18", 1, 2);  // one window, two labels
    const nlohmann::json info = train_detail::pretrained_weights((d / "weights.safetensors").string(), "resnet18", *target);
    EXPECT_EQ(info["adapted"], nlohmann::json({"conv1.weight"}));  // RGB first conv summed for one channel
    ASSERT_EQ(info["fresh"].size(), 2u);                             // the new head
    EXPECT_TRUE(torch::equal(target->named_parameters()["layer4.1.conv2.weight"],
                             source->named_parameters()["layer4.1.conv2.weight"]));
    EXPECT_FALSE(info.contains("sha256"));

    // torchvision's naming: <arch>-<SHA-256 prefix>.pth; the prefix must match.
    const std::string sha = sha256_file(d / "weights.safetensors");
    fs::copy_file(d / "weights.safetensors", d / ("resnet18-" + sha.substr(0, 8) + ".safetensors"));
    const nlohmann::json good = train_detail::pretrained_weights(
        (d / ("resnet18-" + sha.substr(0, 8) + ".safetensors")).string(), "resnet18", *target);
    EXPECT_EQ(good["sha256"], sha);
    const std::string wrong = sha.substr(0, 7) + (sha[7] == '0' ? "1" : "0");
    fs::copy_file(d / "weights.safetensors", d / ("resnet18-" + wrong + ".safetensors"));
    test::expect_input_error(
        [&] { train_detail::pretrained_weights((d / ("resnet18-" + wrong + ".safetensors")).string(), "resnet18", *target); },
        {"SHA-256", wrong});

    // The weights of another architecture fit almost nothing: refused.
    auto cnn = model_named("cnn", 1, 2);
    write_safetensors(d / "cnn.safetensors", state_dict_of(*cnn));
    test::expect_input_error(
        [&] { train_detail::pretrained_weights((d / "cnn.safetensors").string(), "resnet18", *target); },
        {"cnn.safetensors", "another architecture"});
    test::expect_input_error([&] { train_detail::pretrained_weights((d / "none.pth").string(), "resnet18", *target); },
                             {"none.pth"});

    TrainOptions o;
    o.pretrained = "x.pth";
    o.init = "y.pt";
    test::expect_usage_error([&] { validate_train_options(o); }, {"pretrained", "init"});
}

TEST(Pretrained, ImageNetNormalizationPerChannel) {
    cv::Mat img(2, 2, CV_32FC3, cv::Scalar(0, 0.5, 1));
    img.at<cv::Vec3f>(0, 0) = {1, 1, 1};
    img.at<cv::Vec3f>(1, 1) = {0, 0, 0};
    const cv::Mat n = normalize_image(img, parse_normalization("imagenet"));
    // Unit range first (min 0, max 1 over the image), then (x - mean) / std per channel.
    EXPECT_NEAR(n.at<cv::Vec3f>(0, 1)[0], (0 - 0.485) / 0.229, 1e-5);
    EXPECT_NEAR(n.at<cv::Vec3f>(0, 1)[1], (0.5 - 0.456) / 0.224, 1e-5);
    EXPECT_NEAR(n.at<cv::Vec3f>(0, 1)[2], (1 - 0.406) / 0.225, 1e-5);
    cv::Mat grey(1, 2, CV_32F);
    grey.at<float>(0, 0) = 0;
    grey.at<float>(0, 1) = 10;
    EXPECT_NEAR(normalize_image(grey, Normalization::ImageNet).at<float>(0, 1), (1 - 0.449) / 0.226, 1e-5);
}

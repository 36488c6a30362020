// Reconstruction pre-training of unet-ae on a tiny blob data set.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "hemoscan/data/batch_tensor.hpp"
#include "hemoscan/data/loader.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/unet_ae.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/train/pretrain.hpp"
#include "hemoscan/train/trainer.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

namespace {

constexpr int kSize = 32;

PreprocessOptions preprocess() {
    PreprocessOptions p;
    p.resize.width = kSize;
    p.resize.height = kSize;
    return p;
}

LoaderOptions loader_options() {
    LoaderOptions o;
    o.batch_size = 2;
    o.workers = 1;
    o.seed = 3;
    return o;
}

std::vector<size_t> all(const Dataset& ds) {
    std::vector<size_t> v(ds.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = i;
    return v;
}

std::shared_ptr<ClassifierImpl> small_ae() {
    ModelConfig c;
    c.name = "unet-ae";
    c.width = 0.25;  // 4-8-16-32 channels, bottleneck 64
    return create_model(c);
}

// Mean reconstruction MSE of the whole set (eval mode, no gradients), in [0, 1] targets.
double reconstruction_mse(UNetAutoencoderImpl& model, DataLoader& loader) {
    torch::NoGradGuard no_grad;
    model.eval();
    loader.start_epoch(0);
    double sum = 0;
    int64_t n = 0;
    Batch b;
    while (loader.next(b)) {
        const auto x = to_tensors(std::move(b)).images;
        sum += torch::mse_loss(model.reconstruct(x), x).item<double>() * double(x.size(0));
        n += x.size(0);
    }
    model.train();
    return sum / double(n);
}

}  // namespace

TEST(Pretrain, ReconstructionLossFalls) {
    torch::set_num_threads(1);
    test::TempDir dir;
    test::write_blob_dataset(dir / "data", 4, kSize, 5);
    const Dataset ds = open_dataset(dir / "data");
    DataLoader loader(ds, all(ds), preprocess(), loader_options());
    torch::manual_seed(1);
    auto model = small_ae();
    auto& ae = dynamic_cast<UNetAutoencoderImpl&>(*model);
    const auto head_before = model->named_parameters()["out.weight"].clone();

    const double before = reconstruction_mse(ae, loader);
    std::vector<double> losses;
    constexpr int kEpochs = 30;  // 8 images in batches of 2: 120 Adam steps
    pretrain_reconstruction(*model, loader, kEpochs, 3e-3, [&](int epoch, double loss) {
        EXPECT_EQ(epoch, static_cast<int>(losses.size()));
        losses.push_back(loss);
        std::printf("epoch %d loss %.5f\n", epoch, loss);
    });
    ASSERT_EQ(losses.size(), static_cast<size_t>(kEpochs));
    // The epoch losses are noisy (batches of 2): compare the first and last five epochs.
    double first = 0, last = 0;
    for (int e = 0; e < 5; ++e) first += losses[static_cast<size_t>(e)], last += losses[static_cast<size_t>(kEpochs - 1 - e)];
    EXPECT_LT(last, 0.9 * first);
    const double after = reconstruction_mse(ae, loader);
    EXPECT_LT(after, 0.7 * before) << before << " -> " << after;
    // The classification head is not part of the autoencoder.
    EXPECT_TRUE(torch::equal(model->named_parameters()["out.weight"], head_before));
    EXPECT_TRUE(model->is_training());
}

TEST(Pretrain, NeedsUNetAeAndSaneOptions) {
    test::TempDir dir;
    test::write_blob_dataset(dir / "data", 1, kSize, 5);
    const Dataset ds = open_dataset(dir / "data");
    DataLoader loader(ds, all(ds), preprocess(), loader_options());
    ModelConfig c;
    c.name = "cnn-simple";
    auto cnn = create_model(c);
    try {
        pretrain_reconstruction(*cnn, loader, 1, 1e-3, nullptr);
        FAIL() << "no exception";
    } catch (const UsageError& e) {
        EXPECT_STREQ(e.what(), "`pretrain_epochs` needs `model` unet-ae");
    }
    auto ae = small_ae();
    EXPECT_THROW(pretrain_reconstruction(*ae, loader, -1, 1e-3, nullptr), UsageError);
    EXPECT_THROW(pretrain_reconstruction(*ae, loader, 1, 0.0, nullptr), UsageError);
    int calls = 0;
    pretrain_reconstruction(*ae, loader, 0, 1e-3, [&](int, double) { ++calls; });
    EXPECT_EQ(calls, 0);
}

// train_classifier runs the pre-training when asked: --pretrain-epochs N with unet-ae gives N
// reconstruction epochs (recorded in RUN/pretrain.json and the model's meta) before classification.
TEST(Pretrain, TrainerRunsItForUNetAe) {
    test::TempDir dir;
    test::write_blob_dataset(dir / "data", 4, kSize, 5);
    TrainOptions o;
    o.data = (dir / "data").string();
    o.out = (dir / "run").string();
    o.model = "unet-ae";
    o.width = 0.25;
    o.size = kSize;
    o.epochs = 1;
    o.batch = 4;
    o.lr = 1e-2;
    o.val_fraction = 0.25;
    o.threads = 1;  // one intra-op thread: spinning OpenMP threads crawl on a busy 2-core machine
    o.workers = 1;
    o.augment = false;
    o.pretrain_epochs = 3;
    train_classifier(o);
    const auto info = nlohmann::json::parse(read_file(dir / "run" / "pretrain.json"));
    ASSERT_EQ(info.at("reconstruction_mse").size(), 3u);
    EXPECT_LT(info["reconstruction_mse"][2].get<double>(), info["reconstruction_mse"][0].get<double>());
    const LoadedModel m = load_model(dir / "run" / "model.pt");
    EXPECT_EQ(m.meta.at("pretrain").at("epochs").get<int>(), 3);

    // Without pre-training nothing is recorded; with another model it is a usage error.
    o.pretrain_epochs = 0;
    o.out = (dir / "plain").string();
    train_classifier(o);
    EXPECT_FALSE(std::filesystem::exists(dir / "plain" / "pretrain.json"));
    EXPECT_FALSE(load_model(dir / "plain" / "model.pt").meta.contains("pretrain"));
    o.model = "cnn-simple";
    o.pretrain_epochs = 2;
    o.out = (dir / "cnn").string();
    try {
        train_classifier(o);
        FAIL() << "no exception";
    } catch (const UsageError& e) {
        EXPECT_STREQ(e.what(), "`pretrain_epochs` needs `model` unet-ae");
    }
}

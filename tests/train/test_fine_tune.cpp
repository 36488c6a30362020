// Fine-tuning (issue 27): head-only epochs keep the backbone exactly as it starts, the backbone trains
// at its own rate, and a backbone that starts from weights learnt on a related task learns faster.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hemoscan/data/dataset.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/evaluate/classification.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/pretrained.hpp"
#include "hemoscan/models/registry.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/train/trainer.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"
#include "train/fine_tune.hpp"
#include "train/small_options.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<ClassifierImpl> cnn_model(int outputs) {
    ModelConfig c;
    c.name = "cnn";
    c.in_channels = 1;
    c.num_outputs = outputs;
    return create_model(c);
}


// One optimizer step on a random batch.
void step(ClassifierImpl& model, torch::optim::Optimizer& opt) {
    const torch::Tensor x = torch::randn({4, 1, 32, 32});
    const torch::Tensor y = torch::tensor({0.f, 1.f, 0.f, 1.f}).view({4, 1});
    opt.zero_grad();
    torch::nn::functional::binary_cross_entropy_with_logits(model.forward(x), y).backward();
    opt.step();
}

// Tensors of `now` that equal / differ from `before`, split by head and backbone.
struct Changed {
    int head_same = 0, head_changed = 0, backbone_same = 0, backbone_changed = 0;
};
Changed compare(const ClassifierImpl& model, const StateDict& before, const StateDict& now) {
    Changed c;
    for (const auto& [k, t] : before) {
        if (k.find("num_batches_tracked") != std::string::npos) continue;
        const bool same = torch::equal(t, now.at(k));
        if (is_head_parameter(model, k)) {
            (same ? c.head_same : c.head_changed)++;
        } else {
            (same ? c.backbone_same : c.backbone_changed)++;
        }
    }
    return c;
}

}  // namespace

TEST(FineTune, HeadOnlyEpochsKeepTheBackboneExactly) {
    torch::manual_seed(3);
    auto model = cnn_model(1);
    TrainOptions o;
    o.lr = 1e-2;
    o.pretrained = "weights.pth";  // the defaults for pre-trained weights: 1 head-only epoch, backbone at 0.1
    train_detail::FineTuneSettings s = train_detail::fine_tune_settings(o);
    EXPECT_EQ(s.freeze_epochs, 1);
    EXPECT_DOUBLE_EQ(s.backbone_lr_mult, 0.1);
    EXPECT_FALSE(s.freeze_bn);
    s.freeze_epochs = 2;
    const train_detail::FineTune ft(s, *model, [&](const std::string& n) { return is_head_parameter(*model, n); }, "cnn");
    auto opt = ft.make_optimizer(o);
    ASSERT_EQ(opt->param_groups().size(), 2u);
    ft.set_learning_rate(*opt, 0.5);
    EXPECT_DOUBLE_EQ(opt->param_groups()[0].options().get_lr(), 0.5);
    EXPECT_DOUBLE_EQ(opt->param_groups()[1].options().get_lr(), 0.05);
    EXPECT_EQ(opt->param_groups()[0].params().size(), 2u);  // out.weight, out.bias

    const StateDict start = state_dict_of(*model);
    for (int epoch = 0; epoch < 2; ++epoch) {  // head-only: weights and BatchNorm statistics stay
        model->train();
        ft.begin_epoch(epoch);
        for (int i = 0; i < 3; ++i) step(*model, *opt);
    }
    Changed c = compare(*model, start, state_dict_of(*model));
    EXPECT_EQ(c.head_changed, 2);
    EXPECT_EQ(c.backbone_changed, 0);
    EXPECT_GT(c.backbone_same, 20);

    model->train();
    ft.begin_epoch(2);  // now everything trains
    for (int i = 0; i < 3; ++i) step(*model, *opt);
    c = compare(*model, start, state_dict_of(*model));
    EXPECT_EQ(c.backbone_same, 0);

    // freeze_bn: the weights train, the BatchNorm statistics do not.
    torch::manual_seed(4);
    auto bn_model = cnn_model(1);
    train_detail::FineTuneSettings bn;
    bn.freeze_bn = true;
    const train_detail::FineTune bn_ft(bn, *bn_model, [&](const std::string& n) { return is_head_parameter(*bn_model, n); },
                                       "cnn");
    auto bn_opt = bn_ft.make_optimizer(o);
    EXPECT_EQ(bn_opt->param_groups().size(), 1u);
    const StateDict bn_start = state_dict_of(*bn_model);
    bn_model->train();
    bn_ft.begin_epoch(0);
    for (int i = 0; i < 3; ++i) step(*bn_model, *bn_opt);
    const StateDict bn_now = state_dict_of(*bn_model);
    for (const auto& [k, t] : bn_start) {
        if (k.find("running_") != std::string::npos) {
            EXPECT_TRUE(torch::equal(t, bn_now.at(k))) << k;
        } else if (k.find("weight") != std::string::npos) {
            EXPECT_FALSE(torch::equal(t, bn_now.at(k))) << k;
        }
    }
}

TEST(FineTune, OptionsAreChecked) {
    TrainOptions o;
    o.epochs = 5;
    o.freeze_epochs = 6;
    test::expect_usage_error([&] { validate_train_options(o); }, {"freeze_epochs", "0..`epochs` (5"});
    o.freeze_epochs = 5;  // a frozen backbone throughout: the head alone trains (a linear probe)
    validate_train_options(o);
    o.backbone_lr_mult = 0.0;
    test::expect_usage_error([&] { validate_train_options(o); }, {"backbone_lr_mult"});
    // Unset options stay unset in config.json, so a resumed run resolves them the same way.
    o.backbone_lr_mult.reset();
    const TrainOptions back = train_options_from_json(train_options_to_json(o));
    EXPECT_EQ(back.freeze_epochs, 5);
    EXPECT_FALSE(back.backbone_lr_mult.has_value());
}

// A whole run with the backbone frozen throughout ends with exactly the file's backbone (BatchNorm
// statistics too: the precise-BN recalibration must leave them) and a trained head.
TEST(FineTune, FrozenBackboneRunKeepsThePretrainedWeights) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 12);
    torch::manual_seed(5);
    auto source = cnn_model(3);  // another head: it starts fresh
    write_safetensors(d / "w.safetensors", state_dict_of(*source));
    auto o = test::small_options(d / "data", d / "run");
    o.model = "cnn";
    o.epochs = 2;
    o.pretrained = (d / "w.safetensors").string();
    o.freeze_epochs = 2;
    train_classifier(o);
    const LoadedModel trained = load_model(d / "run" / "model.pt");
    const StateDict file = read_safetensors(d / "w.safetensors");
    const StateDict now = state_dict_of(*trained.model);
    int backbone = 0;
    for (const auto& [k, t] : now) {
        if (is_head_parameter(*trained.model, k) || k.find("num_batches_tracked") != std::string::npos) continue;
        EXPECT_TRUE(torch::equal(t, file.at(k))) << k;
        ++backbone;
    }
    EXPECT_GT(backbone, 20);
    EXPECT_EQ(test::read_json(d / "run" / "config.json")["fine_tune"],
              nlohmann::json({{"freeze_epochs", 2}, {"backbone_lr_mult", 0.1}, {"freeze_bn", false}}));

    // One head-only epoch of two: the backbone has moved.
    o.out = (d / "run2").string();
    o.freeze_epochs = 1;
    train_classifier(o);
    const StateDict moved = state_dict_of(*load_model(d / "run2" / "model.pt").model);
    EXPECT_FALSE(torch::equal(moved.at("body.0.weight"), file.at("body.0.weight")));
}

// The smoke test of transfer: a backbone pre-trained (here, in the test) on a related task and brought
// in as a PyTorch-style weight file learns a new small task in a few epochs, where the same model from
// random weights has not yet.
TEST(FineTune, PretrainedBackboneLearnsFaster) {
    test::TempDir d;
    // Faint blobs (contrast 4 noise sigmas): learnt from many images, hard from a few.
    const int faint = 122;
    test::write_blob_dataset(d / "big", 48, 48, 11, faint);  // the "ImageNet": many images
    test::write_blob_dataset(d / "small", 6, 48, 12, faint);  // the new task: few images
    test::write_blob_dataset(d / "test", 24, 48, 13, faint);  // unseen
    auto pre = test::small_options(d / "big", d / "pre");
    pre.model = "cnn";
    pre.epochs = 8;
    train_classifier(pre);
    const LoadedModel base = load_model(d / "pre" / "model.pt");
    StateDict backbone = state_dict_of(*base.model);  // as an ImageNet file: its head is for other classes
    backbone.erase("out.weight");
    backbone.erase("out.bias");
    write_safetensors(d / "base.safetensors", backbone);

    auto score = [&](const std::string& run, const std::string& pretrained) {
        auto o = test::small_options(d / "small", d / run);
        o.model = "cnn";
        o.epochs = 2;
        o.val_fraction = 0.25;
        o.pretrained = pretrained;
        train_classifier(o);
        Predictor p(d / run / "model.pt", 1);
        EvaluateOptions eo;
        eo.workers = 1;
        return evaluate_dataset(p, open_dataset(d / "test"), d / (run + "-eval"), eo)["labels"]["hemorrhage"];
    };
    const nlohmann::json scratch = score("scratch", "");
    const nlohmann::json tuned = score("tuned", (d / "base.safetensors").string());
    // Measured: tuned AUC 1.000, Brier 0.0014; from scratch AUC 0.884, Brier 0.156.
    EXPECT_GT(tuned["auc"].get<double>(), 0.95) << tuned.dump();
    EXPECT_GT(tuned["auc"].get<double>(), scratch["auc"].get<double>() + 0.05) << scratch.dump();
    EXPECT_LT(tuned["brier"].get<double>(), scratch["brier"].get<double>()) << scratch.dump();
}

// Distributed training through the binary (issue 31): `train --nproc-per-node 2` starts two ranks on
// loopback (torchrun's variables, c10d over Gloo); the group must train as one process with the same
// global batch, and only rank 0 writes the run folder.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>
#include <thread>

#include "hemoscan/dist/env.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"

namespace {

namespace fs = std::filesystem;
using hemoscan::test::q;
using hemoscan::test::run_hemoscan;
using hemoscan::test::TempDir;

// The weight bound of the float32 runs through the binary. Their losses are float32 means summed in another
// order on two processes (about 1e-7 relative apart), and Adam divides every update by the root of its
// running squared gradient: for a component whose gradient is near zero, that turns the rounding into
// update differences of a sizable fraction of the learning rate (3e-3 here). 1e-4 is lr / 30; training
// moves the weights by far more (asserted), and the double-precision group tests (DistGroup) hold 1e-12.
constexpr double kFloatBound = 1e-4;

std::set<std::string> run_files(const fs::path& run) {
    std::set<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(run)) names.insert(fs::relative(e.path(), run).string());
    return names;
}

// Largest absolute difference between the parameters of two slice-model files.
double max_weight_difference(const fs::path& a, const fs::path& b) {
    auto ma = hemoscan::load_model(a);
    auto mb = hemoscan::load_model(b);
    auto pb = mb.model->named_parameters();
    double most = 0;
    for (const auto& item : ma.model->named_parameters()) {
        most = std::max(most, (item.value() - pb[item.key()]).abs().max().item<double>());
    }
    return most;
}

}  // namespace

TEST(CliDist, TwoProcessesTrainAsOneWithTheSameGlobalBatch) {
    TempDir d;
    hemoscan::test::write_blob_dataset(d / "data", 12, 32);
    const std::string common = "train --data " + q(d / "data") +
                               " --model cnn-simple --size 32 --batch 8 --epochs 3 --lr 3e-3 --threads 1 --workers 1"
                               " --augment off --dropout 0 --val-fraction 0.25 --seed 5 --dist-timeout 60";  // dropout draws per process
    ASSERT_NO_FATAL_FAILURE(hemoscan::test::run_alone_and_as_group(common + " --out ", d / "one", d / "two"));
    // Only rank 0 wrote: the same files as the single process's run, no rank's scratch left behind.
    EXPECT_EQ(run_files(d / "two"), run_files(d / "one"));
    auto a = hemoscan::load_model(d / "one" / "model.pt");
    auto b = hemoscan::load_model(d / "two" / "model.pt");
    auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    double most = 0, moved = 0;
    for (const auto& item : pa) {
        const auto& other = pb[item.key()];
        most = std::max(most, (item.value() - other).abs().max().item<double>());
        moved = std::max(moved, item.value().abs().max().item<double>());
    }
    // Float32, and the all-reduce adds the two halves in another order than one process sums its batch.
    EXPECT_LE(most, kFloatBound) << "max abs weight difference, 2 processes vs 1, after 3 epochs";
    EXPECT_GT(moved, 0.0);
    const auto metrics_one = hemoscan::test::read_json(d / "one" / "metrics.json");
    const auto metrics_two = hemoscan::test::read_json(d / "two" / "metrics.json");
    EXPECT_NEAR(metrics_one["macro_auc"].get<double>(), metrics_two["macro_auc"].get<double>(), 1e-6);
}

TEST(CliDist, RefusesWhatItCannotDistribute) {
    TempDir d;
    hemoscan::test::write_blob_dataset(d / "data", 4, 32);
    const std::string base = "train --data " + q(d / "data") + " --size 32 --epochs 1 --threads 1 --out ";
    auto r = run_hemoscan(base + q(d / "a") + " --model cnn-simple --batch 7 --nproc-per-node 2");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("multiple of the 2 processes"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "a" / "model.pt"));
    // A partial torchrun environment: a usage error naming what is missing.
    r = hemoscan::test::run_command("WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 " +
                                    q(fs::path(HEMOSCAN_BIN)) + " " + base + q(d / "c") + " --model cnn-simple 2>&1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("RANK is not set"), std::string::npos) << r.output;
}

TEST(CliDist, ShardedEvaluateGathersTheSameTableInInputOrder) {
    TempDir d;
    hemoscan::test::write_blob_dataset(d / "data", 11, 32);  // 22 items: blocks of 11 per rank
    auto r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "run") +
                          " --model cnn-simple --size 32 --batch 8 --epochs 1 --threads 1 --workers 1 --augment off");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string common = "evaluate --model " + q(d / "run" / "model.pt") + " --data " + q(d / "data") +
                               " --threads 1 --workers 1 --batch 4 --out ";
    ASSERT_NO_FATAL_FAILURE(hemoscan::test::run_alone_and_as_group(common, d / "one", d / "two"));
    // The same rows in the same order; probabilities equal up to float rounding of other batch sizes.
    hemoscan::test::expect_csv_near(d / "one" / "predictions.csv", d / "two" / "predictions.csv", 23, 1e-6);
    const auto ma = hemoscan::test::read_json(d / "one" / "metrics.json");
    const auto mb = hemoscan::test::read_json(d / "two" / "metrics.json");
    EXPECT_NEAR(ma["macro_auc"].get<double>(), mb["macro_auc"].get<double>(), 1e-9);
}

TEST(CliDist, AGroupWhoseRankDiesStopsAndResumesFromItsCheckpoint) {
    TempDir d;
    hemoscan::test::write_blob_dataset(d / "data", 12, 32);
    const std::string common = " --model cnn-simple --size 32 --batch 8 --epochs 6 --lr 3e-3 --threads 1 --workers 1"
                               " --augment off --dropout 0 --val-fraction 0.25 --seed 5 --dist-timeout 60";
    auto started = hemoscan::test::run_command(q(fs::path(HEMOSCAN_BIN)) + " train --data " + q(d / "data") + " --out " +
                                               q(d / "two") + common + " --nproc-per-node 2 > " + q(d / "two.log") +
                                               " 2>&1 & echo $!");
    const int launcher = std::stoi(started.output);
    // After the first checkpoint, kill one rank without warning: the launcher must stop the other.
    bool killed = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!killed && std::chrono::steady_clock::now() < deadline) {
        try {
            if (hemoscan::test::read_json(d / "two" / "state.json")["epoch_done"].get<int>() >= 1) {
                const auto ranks = hemoscan::test::run_command("pgrep -P " + std::to_string(launcher));
                std::istringstream pids(ranks.output);
                int rank_pid = 0;
                if (pids >> rank_pid) killed = ::kill(rank_pid, SIGKILL) == 0;
            }
        } catch (...) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(killed);
    hemoscan::test::run_command("while kill -0 " + std::to_string(launcher) + " 2>/dev/null; do sleep 0.05; done");
    EXPECT_NE(hemoscan::read_file(d / "two.log").find("stopping the others"), std::string::npos)
        << hemoscan::read_file(d / "two.log");
    EXPECT_FALSE(hemoscan::test::read_json(d / "two" / "state.json").value("finished", false));
    // The group resumes from rank 0's checkpoint and ends where one uninterrupted process ends.
    auto r = run_hemoscan("train --resume " + q(d / "two") + " --nproc-per-node 2 --dist-timeout 60");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(hemoscan::test::read_json(d / "two" / "state.json")["finished"].get<bool>());
    r = run_hemoscan("train --data " + q(d / "data") + " --out " + q(d / "one") + common);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_LE(max_weight_difference(d / "one" / "model.pt", d / "two" / "model.pt"), kFloatBound)
        << "killed and resumed group vs one uninterrupted process";
}

TEST(CliDist, SegmentationTrainsAsAGroupAndOnlyRankZeroWrites) {
    TempDir d;
    auto r = run_hemoscan("synth --out " + q(d / "syn") +
                          " --studies 6 --seed 3 --size 64 --slices 6 --p-bleed 1 --format nnunet --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string common = "train --task segment --data " + q(d / "syn" / "nnunet") +
                               " --model unet --width 0.25 --depth 3 --size 64 --batch 4 --epochs 2 --threads 1"
                               " --workers 1 --augment off --seed 2 --dist-timeout 60 --out ";
    ASSERT_NO_FATAL_FAILURE(hemoscan::test::run_alone_and_as_group(common, d / "one", d / "two"));
    EXPECT_EQ(run_files(d / "two"), run_files(d / "one"));
    // Not one process's numbers (each rank's batch Dice is over its half), but the same training: the
    // slices seen per epoch are the global batch's, and both runs end with a segmenter.
    const auto log_one = hemoscan::read_file(d / "one" / "log.csv");
    const auto log_two = hemoscan::read_file(d / "two" / "log.csv");
    EXPECT_EQ(std::count(log_one.begin(), log_one.end(), '\n'), std::count(log_two.begin(), log_two.end(), '\n'));
    EXPECT_TRUE(hemoscan::test::read_json(d / "two" / "metrics.json").contains("dice"));
}

TEST(CliDist, CrossValidationTrainsEveryFoldAsTheGroup) {
    TempDir d;
    hemoscan::test::write_blob_dataset(d / "data", 12, 32);
    const std::string common = "cv --data " + q(d / "data") +
                               " --model cnn-simple --size 32 --batch 8 --epochs 1 --lr 3e-3 --threads 1 --workers 1"
                               " --augment off --dropout 0 --folds 2 --seed 5 --dist-timeout 60 --out ";
    ASSERT_NO_FATAL_FAILURE(hemoscan::test::run_alone_and_as_group(common, d / "one", d / "two"));
    EXPECT_EQ(run_files(d / "two"), run_files(d / "one"));
    const auto a = hemoscan::test::read_json(d / "one" / "metrics.json");
    const auto b = hemoscan::test::read_json(d / "two" / "metrics.json");
    EXPECT_NEAR(a["labels"].begin().value()["auc"].get<double>(), b["labels"].begin().value()["auc"].get<double>(), 1e-6);
    for (const std::string fold : {"fold_0", "fold_1"}) {
        EXPECT_LE(max_weight_difference(d / "one" / fold / "model.pt", d / "two" / fold / "model.pt"), kFloatBound)
            << fold;
    }
}

// The study task: stage 1 (its out-of-fold cross-validation and the slice model on all training studies)
// trains as the group, rank 0 then trains the study model and writes the run; cv --task study likewise.
TEST(CliDist, StudyTaskTrainsStageOneAsTheGroup) {
    TempDir d;
    auto r = run_hemoscan("synth --out " + q(d / "cohort") + " --studies 8 --seed 3 --size 48 --slices 5 --format rsna");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path data = d / "cohort" / "rsna";
    const std::string common = " --task study --data " + q(data) +
                               " --model cnn-simple --size 32 --batch 8 --epochs 1 --lr 3e-3 --threads 1 --workers 1"
                               " --augment off --dropout 0 --seed 5 --study-epochs 2 --study-hidden 8 --dist-timeout 60";
    for (const std::string cmd : {"train --stage1-folds 2", "cv --folds 2"}) {
        const std::string name = cmd.substr(0, cmd.find(' '));
        ASSERT_NO_FATAL_FAILURE(
            hemoscan::test::run_alone_and_as_group(cmd + common + " --out ", d / (name + "1"), d / (name + "2")));
        EXPECT_EQ(run_files(d / (name + "2")), run_files(d / (name + "1"))) << cmd;
    }
    // Stage 1 of the group equals one process's.
    for (const char* f : {"stage1/model.pt", "stage1_oof/fold_0/model.pt", "stage1_oof/fold_1/model.pt"}) {
        EXPECT_LE(max_weight_difference(d / "train1" / f, d / "train2" / f), kFloatBound) << f;
    }
    for (const char* f : {"stage1/fold_0/model.pt", "stage1/fold_1/model.pt"}) {
        EXPECT_LE(max_weight_difference(d / "cv1" / f, d / "cv2" / f), kFloatBound) << f;
    }
    // The study model learnt from the same out-of-fold outputs: the same validation figures.
    const auto a = hemoscan::test::read_json(d / "cv1" / "metrics.json");
    const auto b = hemoscan::test::read_json(d / "cv2" / "metrics.json");
    EXPECT_NEAR(a["rsna_log_loss"].get<double>(), b["rsna_log_loss"].get<double>(), 1e-4);
    EXPECT_TRUE(fs::exists(d / "train2" / "model.pt"));
}

// torchrun itself as the launcher (Debian's python3-torch): its agent serves the rendezvous store on
// MASTER_PORT and tells the workers so (TORCHELASTIC_USE_AGENT_STORE=True); every rank connects to it as
// a client, and the group trains as one process.
TEST(CliDist, TrainsUnderTorchrunsAgent) {
    if (hemoscan::test::run_command("/usr/bin/python3 -c 'import torch.distributed.run' 2>/dev/null").exit_code != 0) {
        GTEST_SKIP() << "no torchrun here (Debian's python3-torch)";
    }
    TempDir d;
    hemoscan::test::write_blob_dataset(d / "data", 12, 32);
    const std::string args = " train --data " + q(d / "data") +
                             " --model cnn-simple --size 32 --batch 8 --epochs 2 --lr 3e-3 --threads 1 --workers 1"
                             " --augment off --dropout 0 --val-fraction 0.25 --seed 5 --dist-timeout 60 --out ";
    auto r = run_hemoscan(args + q(d / "one"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // --redirects/--tee 2: Debian 12's torchrun (torch 1.13 under Python 3.11) fails on its default of 0,
    // which its Std.from_str no longer finds among the flags.
    r = hemoscan::test::run_command("/usr/bin/python3 -m torch.distributed.run --nproc_per_node 2 --max_restarts 0"
                                    " --master_port " + std::to_string(hemoscan::free_local_port()) +
                                    " --redirects 2 --tee 2 --no_python " + q(fs::path(HEMOSCAN_BIN)) + args +
                                    q(d / "two"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("torchrun's store"), std::string::npos) << r.output;
    EXPECT_EQ(run_files(d / "two"), run_files(d / "one"));
    EXPECT_LE(max_weight_difference(d / "one" / "model.pt", d / "two" / "model.pt"), kFloatBound);
}

// BatchNorm statistics before validation: each rank runs its share of the un-augmented batches and the
// ranks' averages are combined by batch counts. With weights that training leaves in place (a learning
// rate of 1e-12), the group's statistics must be those of one process running all the batches; here rank
// 0 runs a batch of 8 and rank 1 a batch of 1, so dropping either rank's share would show.
TEST(CliDist, BatchNormStatisticsAreOneProcesssOverAllBatches) {
    TempDir d;
    hemoscan::test::write_blob_dataset(d / "data", 12, 32);
    const std::string common = "train --data " + q(d / "data") +
                               " --model cnn --width 0.25 --size 32 --batch 8 --epochs 1 --lr 1e-12 --threads 1"
                               " --workers 1 --augment off --dropout 0 --val-fraction 0.25 --seed 5 --dist-timeout 60";
    ASSERT_NO_FATAL_FAILURE(hemoscan::test::run_alone_and_as_group(common + " --out ", d / "one", d / "two"));
    auto a = hemoscan::load_model(d / "one" / "model.pt");
    auto b = hemoscan::load_model(d / "two" / "model.pt");
    auto bb = b.model->named_buffers();
    size_t compared = 0;
    double most = 0, spread = 0;
    for (const auto& item : a.model->named_buffers()) {
        if (item.key().find("running_") == std::string::npos) continue;
        const auto x = item.value().to(torch::kFloat64), y = bb[item.key()].to(torch::kFloat64);
        most = std::max(most, ((x - y).abs() / (x.abs() + 1e-3)).max().item<double>());
        const bool is_mean = item.key().find("running_mean") != std::string::npos;
        spread = std::max(spread, (x - (is_mean ? 0.0 : 1.0)).abs().max().item<double>());  // not the reset values
        ++compared;
    }
    EXPECT_GT(compared, 4u);
    EXPECT_GT(spread, 1e-2) << "the statistics were not recomputed";
    EXPECT_LE(most, 1e-4) << "largest relative difference of a running mean or variance, 2 processes vs 1";
}

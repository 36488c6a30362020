// The process group (issue 31) on loopback: torchrun's environment, the epoch shards, and real groups of
// two processes (this test binary started again as the ranks: DistChild.Rank runs only in them), whose
// averaged gradients must train exactly as one process with the whole batch, and whose failures (a rank
// that dies, one that never comes) must end the others with a message, not a hang.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "hemoscan/data/loader.hpp"
#include "hemoscan/dist/env.hpp"
#include "hemoscan/dist/grad_sync.hpp"
#include "hemoscan/dist/process_group.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using hemoscan::DistEnv;
using hemoscan::test::TempDir;

struct RankRun {
    int exit_code = -1;
    std::string output;
    double seconds = 0;
};

// Starts this binary as ranks 0..world-1 of `scenario` (only `ranks` of them: a rank left out never
// comes), waits for all, returns each one's exit code and output.
std::vector<RankRun> run_ranks(const std::string& scenario, int world, const fs::path& dir,
                               std::vector<int> ranks = {}) {
    if (ranks.empty()) {
        for (int r = 0; r < world; ++r) ranks.push_back(r);
    }
    const int port = hemoscan::free_local_port();
    std::vector<pid_t> pids;
    const auto start = std::chrono::steady_clock::now();
    for (int r : ranks) {
        std::vector<std::string> env_strings;
        for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
        for (const auto& [k, v] : std::map<std::string, std::string>{
                 {"HEMOSCAN_DIST_SCENARIO", scenario}, {"HEMOSCAN_DIST_DIR", dir.string()},
                 {"RANK", std::to_string(r)}, {"LOCAL_RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(world)},
                 {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}, {"OMP_NUM_THREADS", "1"}}) {
            env_strings.push_back(k + "=" + v);
        }
        std::vector<char*> envp;
        for (auto& s : env_strings) envp.push_back(s.data());
        envp.push_back(nullptr);
        const std::string out = (dir / ("rank" + std::to_string(r) + ".log")).string();
        std::string self = fs::read_symlink("/proc/self/exe").string();
        std::string filter = "--gtest_filter=DistChild.Rank";
        std::vector<char*> argv{self.data(), filter.data(), nullptr};
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
        pid_t pid = -1;
        EXPECT_EQ(posix_spawn(&pid, self.c_str(), &actions, nullptr, argv.data(), envp.data()), 0);
        posix_spawn_file_actions_destroy(&actions);
        pids.push_back(pid);
    }
    std::vector<RankRun> runs;
    for (size_t i = 0; i < pids.size(); ++i) {
        int status = 0;
        waitpid(pids[i], &status, 0);
        RankRun run;
        run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        run.output = hemoscan::read_file(dir / ("rank" + std::to_string(ranks[i]) + ".log"));
        runs.push_back(run);
    }
    return runs;
}

// A small model and a fixed global batch of 8 samples, the same in every process.
struct Tiny : torch::nn::Module {
    torch::nn::Linear a{nullptr}, b{nullptr};
    Tiny() {
        a = register_module("a", torch::nn::Linear(5, 7));
        b = register_module("b", torch::nn::Linear(7, 1));
    }
    torch::Tensor forward(const torch::Tensor& x) { return b(torch::tanh(a(x))); }
};

std::pair<torch::Tensor, torch::Tensor> global_batch(int step) {
    torch::manual_seed(1000 + step);
    auto x = torch::randn({8, 5}, torch::kFloat64);
    auto y = torch::randn({8, 1}, torch::kFloat64);
    return {x, y};
}

constexpr int kSteps = 5;

// k SGD steps on rows [begin, end) of each global batch, gradients averaged over the group when there is one:
// after backward (ProcessGroup::average_gradients) or during it (GradientSync, c10d's Reducer). `freeze`: the
// first layer is frozen for the first two steps (the Reducer lays its buckets out again when it thaws).
torch::Tensor train_steps(hemoscan::ProcessGroup* group, int begin, int end, bool reducer = false,
                          bool freeze = false) {
    torch::manual_seed(7);
    Tiny model;
    model.to(torch::kFloat64);
    if (group) group->broadcast_module(model);
    std::unique_ptr<hemoscan::GradientSync> sync;
    if (group && reducer) sync = std::make_unique<hemoscan::GradientSync>(*group, model, 64);  // several buckets
    torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    for (int step = 0; step < kSteps; ++step) {
        for (auto& p : model.a->parameters()) p.set_requires_grad(!(freeze && step < 2));
        auto [x, y] = global_batch(step);
        sgd.zero_grad();
        auto loss = torch::mse_loss(model.forward(x.slice(0, begin, end)), y.slice(0, begin, end));
        if (sync) {
            sync->backward(loss);
        } else {
            loss.backward();
            if (group) group->average_gradients(model, 64);  // small buckets: several all-reduces per step
        }
        sgd.step();
    }
    std::vector<torch::Tensor> flat;
    for (auto& p : model.parameters()) flat.push_back(p.detach().reshape({-1}));
    return torch::cat(flat);
}

void write_tensor(const fs::path& path, const torch::Tensor& t) {
    std::ostringstream out;
    out.precision(17);
    for (int64_t i = 0; i < t.numel(); ++i) out << t[i].item<double>() << "\n";
    hemoscan::write_file_atomic(path, out.str());
}

std::vector<double> read_values(const fs::path& path) {
    std::vector<double> v;
    std::istringstream in(hemoscan::read_file(path));
    for (double x; in >> x;) v.push_back(x);
    return v;
}

}  // namespace

// Runs only inside the ranks that the tests below start (HEMOSCAN_DIST_SCENARIO set).
TEST(DistChild, Rank) {
    const char* scenario_env = std::getenv("HEMOSCAN_DIST_SCENARIO");
    if (!scenario_env) GTEST_SKIP() << "a rank of the DistGroup tests, started by them";
    const std::string scenario = scenario_env;
    const fs::path dir = std::getenv("HEMOSCAN_DIST_DIR");
    const DistEnv env = hemoscan::dist_env_from();
    torch::set_num_threads(1);
    try {
        hemoscan::ProcessGroup group(env, std::chrono::milliseconds(scenario == "train" || scenario == "reducer" ? 30000 : 3000));
        if (scenario == "sums") {
            std::vector<torch::Tensor> t{torch::full({3}, env.rank + 1.0), torch::full({2, 2}, 10.0 * (env.rank + 1))};
            group.all_reduce_sum(t, 8);  // 8 bytes: one bucket per tensor
            EXPECT_TRUE(torch::equal(t[0], torch::full({3}, 3.0)));
            EXPECT_TRUE(torch::equal(t[1], torch::full({2, 2}, 30.0)));
            std::vector<double> mine(static_cast<size_t>(env.rank + 1), env.rank * 1.5);
            EXPECT_EQ(group.all_gather(mine), (std::vector<double>{0.0, 1.5, 1.5}));
        } else if (scenario == "train" || scenario == "reducer") {
            const int half = 8 / env.world_size;
            const bool reducer = scenario == "reducer";
            const auto weights = train_steps(&group, env.rank * half, (env.rank + 1) * half, reducer, reducer);
            write_tensor(dir / ("weights" + std::to_string(env.rank) + ".txt"), weights);
        } else if (scenario == "reducer-die") {
            if (env.rank == 1) std::_Exit(3);
            Tiny model;
            hemoscan::GradientSync sync(group, model);
            sync.backward(model.forward(torch::randn({4, 5})).sum());
            ADD_FAILURE() << "backward with a dead rank returned";
        } else if (scenario == "die") {
            if (env.rank == 1) std::_Exit(3);  // gone without a word, as a killed process
            std::vector<torch::Tensor> t{torch::ones({4})};
            group.all_reduce_sum(t);
            ADD_FAILURE() << "the all-reduce with a dead rank returned";
        }
    } catch (const hemoscan::InputError& e) {
        std::printf("hemoscan error: %s\n", e.what());
        std::fflush(stdout);
        std::_Exit(1);
    }
}

TEST(DistEnv, ReadsTorchrunsVariablesAndRefusesPartialSets) {
    auto from = [](std::map<std::string, std::string> vars) {
        return hemoscan::dist_env_from([vars](const char* name) -> const char* {
            auto it = vars.find(name);
            return it == vars.end() ? nullptr : it->second.c_str();
        });
    };
    EXPECT_FALSE(from({}).distributed());
    EXPECT_FALSE(from({{"WORLD_SIZE", "1"}}).distributed());
    const DistEnv e = from({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node0"},
                            {"MASTER_PORT", "29400"}});
    EXPECT_TRUE(e.distributed());
    EXPECT_EQ(e.rank, 3);
    EXPECT_EQ(e.local_rank, 1);
    EXPECT_EQ(e.master_addr, "node0");
    EXPECT_EQ(e.master_port, 29400);
    hemoscan::test::expect_usage_error([&] { from({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}}); },
                                       {"RANK is not set"});
    hemoscan::test::expect_usage_error(
        [&] { from({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}}); }, {"RANK='2'"});
    hemoscan::test::expect_usage_error([&] { from({{"WORLD_SIZE", "two"}}); }, {"WORLD_SIZE='two'"});
    // torchrun's agent store: every rank a client of it, keys under the restart's prefix.
    std::map<std::string, std::string> agent{{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "a"},
                                             {"MASTER_PORT", "1"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                             {"TORCHELASTIC_RESTART_COUNT", "3"}};
    EXPECT_TRUE(from(agent).agent_store);
    EXPECT_EQ(from(agent).restart_count, 3);
    EXPECT_FALSE(e.agent_store);
    agent["TORCHELASTIC_USE_AGENT_STORE"] = "False";
    EXPECT_FALSE(from(agent).agent_store);
}

TEST(DistShard, EpochShardsCoverEveryItemAndTakeEqualSteps) {
    for (size_t n : {0u, 1u, 7u, 10u, 101u}) {
        std::vector<size_t> order(n);
        for (size_t i = 0; i < n; ++i) order[i] = (i * 7919) % 1009;  // any order of distinct items
        for (int world : {1, 2, 3, 4}) {
            std::multiset<size_t> seen, kept;
            size_t steps = 0, kept_steps = 0;
            for (int r = 0; r < world; ++r) {
                const auto mine = hemoscan::shard_order(order, r, world, false);
                const auto cut = hemoscan::shard_order(order, r, world, true);
                if (r == 0) steps = mine.size(), kept_steps = cut.size();
                EXPECT_EQ(mine.size(), steps) << "n " << n << " world " << world;
                EXPECT_EQ(cut.size(), kept_steps) << "n " << n << " world " << world;
                seen.insert(mine.begin(), mine.end());
                kept.insert(cut.begin(), cut.end());
            }
            // Padded: every item, at most world - 1 of them twice.
            EXPECT_EQ(std::set<size_t>(seen.begin(), seen.end()), std::set<size_t>(order.begin(), order.end()));
            EXPECT_LT(seen.size(), n + static_cast<size_t>(world));
            // Cut: the first n - n % world items of the order, once each.
            EXPECT_EQ(kept, std::multiset<size_t>(order.begin(), order.begin() + static_cast<long>(n / world * world)));
        }
    }
    EXPECT_EQ(hemoscan::shard_order({10, 11, 12, 13, 14}, 0, 2, false), (std::vector<size_t>{10, 12, 14}));
    EXPECT_EQ(hemoscan::shard_order({10, 11, 12, 13, 14}, 1, 2, false), (std::vector<size_t>{11, 13, 10}));
    EXPECT_EQ(hemoscan::shard_order({10, 11, 12, 13, 14}, 1, 2, true), (std::vector<size_t>{11, 13}));
    // Ranges: contiguous, in order, without repeats.
    size_t next = 0;
    for (int r = 0; r < 3; ++r) {
        const auto [b, e] = hemoscan::shard_range(10, r, 3);
        EXPECT_EQ(b, next);
        EXPECT_EQ(e - b, r == 0 ? 4u : 3u);
        next = e;
    }
    EXPECT_EQ(next, 10u);
    EXPECT_THROW(hemoscan::shard_range(10, 3, 3), hemoscan::UsageError);
}

TEST(DistGroup, CollectivesSumAndGatherAcrossTwoProcesses) {
    TempDir d;
    for (const auto& run : run_ranks("sums", 2, d.path())) EXPECT_EQ(run.exit_code, 0) << run.output;
}

namespace {

// Runs `scenario` on 2 ranks and compares both ranks' weights with one process's `single` (double: 1e-12).
void expect_ranks_train_as(const std::string& scenario, const torch::Tensor& single) {
    TempDir d;
    for (const auto& run : run_ranks(scenario, 2, d.path())) ASSERT_EQ(run.exit_code, 0) << run.output;
    const auto r0 = read_values(d / "weights0.txt");
    const auto r1 = read_values(d / "weights1.txt");
    ASSERT_EQ(r0.size(), static_cast<size_t>(single.numel()));
    EXPECT_EQ(r0, r1) << "the ranks ended with different weights";
    double most = 0;
    for (size_t i = 0; i < r0.size(); ++i) most = std::max(most, std::abs(r0[i] - single[static_cast<int64_t>(i)].item<double>()));
    EXPECT_LE(most, 1e-12) << scenario << ": max abs difference to one process after " << kSteps << " steps (double)";
}

}  // namespace

TEST(DistGroup, AveragedGradientsTrainAsOneProcessWithTheWholeBatch) {
    const auto single = train_steps(nullptr, 0, 8);
    expect_ranks_train_as("train", single);
    // Not vacuous: the weights moved.
    torch::manual_seed(7);
    Tiny start;
    EXPECT_GT((single.slice(0, 0, 35) - start.a->weight.reshape({-1}).to(torch::kFloat64)).abs().max().item<double>(), 1e-3);
}

TEST(DistGroup, TheReducerAveragesDuringBackwardAsOneProcessWithTheWholeBatch) {
    const auto single = train_steps(nullptr, 0, 8, false, true);
    expect_ranks_train_as("reducer", single);
    // The frozen steps mattered: training without them ends elsewhere.
    EXPECT_GT((train_steps(nullptr, 0, 8) - single).abs().max().item<double>(), 1e-3);
}

// A rank gone without a word, as a killed process: in a plain all-reduce, and in the Reducer's during backward.
TEST(DistGroup, ARankThatDiesEndsTheOthersWithAMessage) {
    for (const auto& [scenario, message] : std::vector<std::pair<std::string, std::string>>{
             {"die", "all-reduce failed"}, {"reducer-die", "gradient all-reduce failed"}}) {
        TempDir d;
        const auto runs = run_ranks(scenario, 2, d.path());
        EXPECT_EQ(runs[1].exit_code, 3) << scenario;
        EXPECT_EQ(runs[0].exit_code, 1) << runs[0].output;
        EXPECT_NE(runs[0].output.find("rank 0 of 2"), std::string::npos) << runs[0].output;
        EXPECT_NE(runs[0].output.find(message), std::string::npos) << runs[0].output;
        EXPECT_LT(runs[0].seconds, 30.0) << scenario;
    }
}

TEST(DistGroup, ARendezvousThatNeverCompletesEndsWithAMessage) {
    TempDir d;
    const auto runs = run_ranks("sums", 2, d.path(), {0});  // rank 1 never starts
    ASSERT_EQ(runs.size(), 1u);
    EXPECT_EQ(runs[0].exit_code, 1) << runs[0].output;
    EXPECT_NE(runs[0].output.find("joining the process group failed"), std::string::npos) << runs[0].output;
    EXPECT_LT(runs[0].seconds, 30.0);
}

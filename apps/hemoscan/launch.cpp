// The local launcher of `--nproc-per-node`: this process's own command line again, once per rank.
#include "launch.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "hemoscan/dist/env.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"

extern char** environ;

namespace hemoscan::cli {

namespace {

// argv of this process from /proc, without --nproc-per-node and its value.
std::vector<std::string> own_arguments() {
    const std::string raw = read_file("/proc/self/cmdline");
    std::vector<std::string> args;
    for (size_t at = 0; at < raw.size();) {
        const size_t end = raw.find('\0', at);
        args.push_back(raw.substr(at, end - at));
        at = end == std::string::npos ? raw.size() : end + 1;
    }
    std::vector<std::string> out;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--nproc-per-node") {
            ++i;
            continue;
        }
        if (args[i].rfind("--nproc-per-node=", 0) == 0) continue;
        out.push_back(args[i]);
    }
    return out;
}

pid_t spawn_rank(std::vector<std::string> args, int rank, int n, int port) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
        const std::string v(*e);
        if (v.rfind("RANK=", 0) == 0 || v.rfind("LOCAL_RANK=", 0) == 0 || v.rfind("WORLD_SIZE=", 0) == 0 ||
            v.rfind("MASTER_ADDR=", 0) == 0 || v.rfind("MASTER_PORT=", 0) == 0) {
            continue;
        }
        env.push_back(v);
    }
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("LOCAL_RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(n));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data()) != 0) {
        throw InputError("--nproc-per-node: cannot start rank " + std::to_string(rank));
    }
    return pid;
}

}  // namespace

void add_group_options(CLI::App& app, GroupArgs& args, const std::string& nproc_help) {
    app.add_option("--nproc-per-node", args.nproc, nproc_help)->check(CLI::Range(1, 1024));
    app.add_option("--dist-timeout", args.timeout_s, "Seconds a rank may not answer before the others stop with an error")
        ->check(CLI::Range(1, 86400))
        ->capture_default_str();
}

std::optional<int> launch_or_join(const GroupArgs& args, DistEnv& dist) {
    if (args.nproc > 1) {
        if (std::getenv("WORLD_SIZE")) throw UsageError("--nproc-per-node with WORLD_SIZE already set: one launcher");
        return launch_local_group(args.nproc);
    }
    dist = dist_env_from();
    if (dist.rank > 0) set_log_level("warn");  // rank 0 reports for the group
    return std::nullopt;
}

int launch_local_group(int n) {
    const std::vector<std::string> args = own_arguments();
    const int port = free_local_port();
    logger().info("starting {} processes on this machine (rendezvous 127.0.0.1:{})", n, port);
    std::vector<pid_t> pids;
    for (int r = 0; r < n; ++r) pids.push_back(spawn_rank(args, r, n, port));
    int result = 0;
    size_t running = pids.size();
    while (running > 0) {
        int status = 0;
        const pid_t pid = ::waitpid(-1, &status, 0);
        if (pid < 0) break;
        --running;
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code != 0 && result == 0) {
            result = code;
            // One rank failed: the others would wait for it until their timeout; stop them now.
            for (pid_t p : pids) {
                if (p != pid) ::kill(p, SIGTERM);
            }
            for (size_t r = 0; r < pids.size(); ++r) {
                if (pids[r] == pid) logger().error("rank {} ended with exit code {}: stopping the others", r, code);
            }
        }
    }
    return result;
}

}  // namespace hemoscan::cli

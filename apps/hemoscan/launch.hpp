#pragma once
// `--nproc-per-node N`: hemoscan starts its own local group of processes, as torchrun does.
#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "hemoscan/dist/env.hpp"

namespace hemoscan::cli {

// What `train`, `cv` and `evaluate` share for running as a group.
struct GroupArgs {
    int nproc = 1;        // --nproc-per-node
    int timeout_s = 300;  // --dist-timeout
};

// --nproc-per-node (described by `nproc_help`) and --dist-timeout.
void add_group_options(CLI::App& app, GroupArgs& args, const std::string& nproc_help);

// With --nproc-per-node N > 1: starts the local group and returns its exit code (this process only
// launches; UsageError when WORLD_SIZE is already set). Otherwise nullopt, and `dist` is this
// process's place (torchrun's variables); ranks other than 0 then log warnings only.
std::optional<int> launch_or_join(const GroupArgs& args, DistEnv& dist);

// Starts N copies of this process's command line (without --nproc-per-node) as ranks 0..N-1 of a group
// on this machine: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1 and MASTER_PORT (a free port)
// set as torchrun sets them. Waits for all; when one fails, stops the others (SIGTERM) and returns its
// exit code; 0 when all succeed.
int launch_local_group(int n);

}  // namespace hemoscan::cli

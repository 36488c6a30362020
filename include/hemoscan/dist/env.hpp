#pragma once
// Who this process is in a group of training processes, and which items it works on (issue 31).
// The names are the ones torchrun, Slurm wrappers and Kubernetes indexed Jobs set for PyTorch, so that
// hemoscan launches the way PyTorch jobs do. Free of LibTorch.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace hemoscan {

struct DistEnv {
    int rank = 0;             // RANK: 0 .. world_size - 1
    int world_size = 1;       // WORLD_SIZE
    int local_rank = 0;       // LOCAL_RANK: the process's index on its machine
    std::string master_addr = "127.0.0.1";  // MASTER_ADDR: where rank 0 serves the rendezvous
    int master_port = 29500;  // MASTER_PORT
    // torchrun's agent serves the rendezvous store itself and says so (TORCHELASTIC_USE_AGENT_STORE=True):
    // every rank, rank 0 too, then connects to it as a client, under the key prefix of the agent's restart
    // count (TORCHELASTIC_RESTART_COUNT), as PyTorch's own workers do.
    bool agent_store = false;
    int restart_count = 0;
    bool distributed() const { return world_size > 1; }
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (and torchrun's agent-store variables)
// through `get` (getenv by default).
// None set (or WORLD_SIZE 1): one process. UsageError naming the variable for a value that is not a
// number in range, and for a partial set (WORLD_SIZE > 1 without RANK, MASTER_ADDR or MASTER_PORT).
DistEnv dist_env_from(const std::function<const char*(const char*)>& get = {});

// A fixed list split for evaluation or prediction, without repeats: rank r takes the contiguous block
// [begin, end); the first n % world ranks one item more. Gathering the blocks in rank order restores
// the input order.
std::pair<size_t, size_t> shard_range(size_t n, int rank, int world);

// A loopback TCP port nothing listens on now (the OS picks it): the rendezvous of a group on this
// machine (`--nproc-per-node`). Another process may take it before rank 0 binds it: rare, and then the
// group fails to start with the rendezvous error.
int free_local_port();

class ProcessGroup;  // dist/process_group.hpp (LibTorch)

// Joins the group `env` describes (dist/process_group.hpp); null for one process. For front ends that
// pass the group on without including LibTorch.
std::shared_ptr<ProcessGroup> join_process_group(const DistEnv& env, int timeout_s);

}  // namespace hemoscan

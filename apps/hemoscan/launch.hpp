#pragma once
// `--nproc-per-node N`: hemoscan starts its own local group of processes, as torchrun does.

namespace hemoscan::cli {

// Starts N copies of this process's command line (without --nproc-per-node) as ranks 0..N-1 of a group
// on this machine: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1 and MASTER_PORT (a free port)
// set as torchrun sets them. Waits for all; when one fails, stops the others (SIGTERM) and returns its
// exit code; 0 when all succeed.
int launch_local_group(int n);

}  // namespace hemoscan::cli

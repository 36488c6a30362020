#pragma once
// A group of cooperating processes on LibTorch's c10d: a TCPStore rendezvous (rank 0 serves it at
// MASTER_ADDR:MASTER_PORT) and ProcessGroupGloo collectives over TCP (CPU tensors). Includes LibTorch:
// only the trainer's sources include it.
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "hemoscan/dist/env.hpp"

namespace c10d {
class ProcessGroup;
}

namespace hemoscan {

class ProcessGroup {
public:
    // Joins the group. InputError naming the rendezvous address, the rank and the timeout when the
    // group is not complete within `timeout` (a rank that never starts), or the address is unusable.
    // Every later collective fails with InputError after `timeout` too (a rank that died: no hang).
    ProcessGroup(const DistEnv& env, std::chrono::milliseconds timeout);
    ~ProcessGroup();
    ProcessGroup(const ProcessGroup&) = delete;
    ProcessGroup& operator=(const ProcessGroup&) = delete;

    int rank() const;
    int size() const;

    // Sums (or averages over the ranks) the tensors in place, flattened into buckets of at most
    // `bucket_bytes` per collective (one all-reduce per bucket, as DDP's buckets).
    void all_reduce_sum(std::vector<torch::Tensor>& tensors, size_t bucket_bytes = 25u << 20);
    void all_reduce_mean(std::vector<torch::Tensor>& tensors, size_t bucket_bytes = 25u << 20);
    // Averages the gradients of every parameter that has one (after backward, before the step).
    void average_gradients(torch::nn::Module& module, size_t bucket_bytes = 25u << 20);
    // Rank `root`'s parameters and buffers to every rank (the same start everywhere).
    void broadcast_module(torch::nn::Module& module, int root = 0);
    // Each rank's values, concatenated in rank order (ranks may give different counts).
    std::vector<double> all_gather(const std::vector<double>& values);
    // Each rank's rows of `width` values, concatenated in rank order (Error when a row has another width).
    std::vector<std::vector<double>> all_gather_rows(const std::vector<std::vector<double>>& rows, size_t width);
    // The element-wise sums over the ranks of a few numbers (loss sums and counts; in double).
    std::vector<double> sum(const std::vector<double>& values);
    void barrier();
    // Each rank's text (any bytes), in rank order: the rows of sharded inference as serialised records.
    std::vector<std::string> all_gather_strings(const std::string& text);

    // "rank R of N (rendezvous ADDR:PORT)", for messages.
    std::string where() const;
    // The timeout of every collective.
    std::chrono::milliseconds timeout() const;
    // The c10d group itself, for c10d's own users (the gradient Reducer, dist/grad_sync.hpp).
    c10::intrusive_ptr<c10d::ProcessGroup> backend() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace hemoscan

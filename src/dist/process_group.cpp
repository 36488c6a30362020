// The process group on c10d: TCPStore rendezvous and Gloo collectives, with every failure (a rank that
// never came, one that died) turned into an InputError after the timeout instead of a hang.
#include "hemoscan/dist/process_group.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>

#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"

namespace hemoscan {

struct ProcessGroup::Impl {
    DistEnv env;
    std::chrono::milliseconds timeout{0};
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::ProcessGroupGloo> group;

    std::string where() const {
        return "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) + " (rendezvous " +
               env.master_addr + ":" + std::to_string(env.master_port) + (env.agent_store ? ", torchrun's store" : "") +
               ")";
    }

    [[noreturn]] void fail(const char* what, const std::exception& e) const {
        throw InputError(where() + ": " + what + " failed within " + std::to_string(timeout.count() / 1000.0) +
                         " s (a rank that stopped or never started?): " + first_line(e.what()));
    }

    static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

    void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const {
        try {
            work->wait(timeout);
        } catch (const std::exception& e) {
            fail(what, e);
        }
    }

    // The network device Gloo binds: GLOO_SOCKET_IFNAME as PyTorch reads it, loopback for a loopback
    // rendezvous, else the address this machine's name resolves to.
    static std::shared_ptr<::gloo::transport::Device> device(const DistEnv& env) {
        if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
            return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
        }
        const std::string& a = env.master_addr;
        if (a == "localhost" || a.rfind("127.", 0) == 0) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
        return c10d::ProcessGroupGloo::createDefaultDevice();
    }
};

ProcessGroup::ProcessGroup(const DistEnv& env, std::chrono::milliseconds timeout) : impl_(std::make_unique<Impl>()) {
    Impl& s = *impl_;
    s.env = env;
    s.timeout = timeout;
    try {
        c10d::TCPStoreOptions o;
        o.port = static_cast<std::uint16_t>(env.master_port);
        o.isServer = env.rank == 0 && !env.agent_store;
        o.numWorkers = env.world_size;
        o.waitWorkers = true;  // rank 0 returns once every rank has connected (or the timeout passed)
        o.timeout = timeout;
        auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
        s.store = tcp;
        if (env.agent_store) {
            s.store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), tcp);
        }
        auto options = c10d::ProcessGroupGloo::Options::create();
        options->timeout = timeout;
        options->devices.push_back(Impl::device(env));
        s.group = c10::make_intrusive<c10d::ProcessGroupGloo>(s.store, env.rank, env.world_size, options);
    } catch (const std::exception& e) {
        s.fail("joining the process group", e);
    }
    logger().info("process group: {} joined", s.where());
}

ProcessGroup::~ProcessGroup() = default;

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::size() const { return impl_->env.world_size; }

void ProcessGroup::all_reduce_sum(std::vector<torch::Tensor>& tensors, size_t bucket_bytes) {
    torch::NoGradGuard no_grad;
    size_t i = 0;
    while (i < tensors.size()) {
        // One bucket: consecutive tensors of one dtype up to bucket_bytes (at least one tensor).
        size_t j = i, bytes = 0;
        while (j < tensors.size() && tensors[j].scalar_type() == tensors[i].scalar_type() &&
               (j == i || bytes + tensors[j].nbytes() <= bucket_bytes)) {
            bytes += tensors[j].nbytes();
            ++j;
        }
        std::vector<torch::Tensor> parts;
        for (size_t k = i; k < j; ++k) parts.push_back(tensors[k].reshape({-1}));
        std::vector<torch::Tensor> flat{torch::cat(parts).contiguous()};
        impl_->wait(impl_->group->allreduce(flat), "all-reduce");
        int64_t offset = 0;
        for (size_t k = i; k < j; ++k) {
            const int64_t n = tensors[k].numel();
            tensors[k].copy_(flat[0].narrow(0, offset, n).view_as(tensors[k]));
            offset += n;
        }
        i = j;
    }
}

void ProcessGroup::all_reduce_mean(std::vector<torch::Tensor>& tensors, size_t bucket_bytes) {
    all_reduce_sum(tensors, bucket_bytes);
    torch::NoGradGuard no_grad;
    for (auto& t : tensors) t.div_(static_cast<double>(size()));
}

void ProcessGroup::average_gradients(torch::nn::Module& module, size_t bucket_bytes) {
    std::vector<torch::Tensor> grads;
    for (auto& p : module.parameters()) {
        if (p.grad().defined()) grads.push_back(p.grad());
    }
    all_reduce_mean(grads, bucket_bytes);
}

void ProcessGroup::broadcast_module(torch::nn::Module& module, int root) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> tensors;
    for (auto& p : module.parameters()) tensors.push_back(p);
    for (auto& b : module.buffers()) tensors.push_back(b);
    for (auto& t : tensors) {
        std::vector<torch::Tensor> one{t.contiguous()};
        c10d::BroadcastOptions o;
        o.rootRank = root;
        impl_->wait(impl_->group->broadcast(one, o), "broadcast");
        if (!one[0].is_same(t)) t.copy_(one[0]);
    }
}

std::vector<double> ProcessGroup::all_gather(const std::vector<double>& values) {
    const int n = size();
    // Counts first, then the values padded to the largest count.
    std::vector<torch::Tensor> count{torch::tensor({static_cast<int64_t>(values.size())}, torch::kInt64)};
    std::vector<std::vector<torch::Tensor>> counts(1);
    for (int r = 0; r < n; ++r) counts[0].push_back(torch::zeros({1}, torch::kInt64));
    impl_->wait(impl_->group->allgather(counts, count), "all-gather");
    int64_t most = 0;
    for (const auto& c : counts[0]) most = std::max(most, c.item<int64_t>());
    std::vector<torch::Tensor> mine{torch::zeros({std::max<int64_t>(most, 1)}, torch::kFloat64)};
    for (size_t i = 0; i < values.size(); ++i) mine[0][static_cast<int64_t>(i)] = values[i];
    std::vector<std::vector<torch::Tensor>> all(1);
    for (int r = 0; r < n; ++r) all[0].push_back(torch::zeros_like(mine[0]));
    impl_->wait(impl_->group->allgather(all, mine), "all-gather");
    std::vector<double> out;
    for (int r = 0; r < n; ++r) {
        const auto c = counts[0][static_cast<size_t>(r)].item<int64_t>();
        const auto* data = all[0][static_cast<size_t>(r)].data_ptr<double>();
        out.insert(out.end(), data, data + c);
    }
    return out;
}

std::vector<std::vector<double>> ProcessGroup::all_gather_rows(const std::vector<std::vector<double>>& rows,
                                                               size_t width) {
    std::vector<double> flat;
    for (const auto& row : rows) {
        if (row.size() != width) throw Error("all_gather_rows: a row of " + std::to_string(row.size()) + " values, not " +
                                             std::to_string(width));
        flat.insert(flat.end(), row.begin(), row.end());
    }
    const std::vector<double> all = all_gather(flat);
    std::vector<std::vector<double>> out;
    for (size_t k = 0; width > 0 && k < all.size() / width; ++k) {
        out.emplace_back(all.begin() + static_cast<long>(k * width), all.begin() + static_cast<long>((k + 1) * width));
    }
    return out;
}

std::vector<double> ProcessGroup::sum(const std::vector<double>& values) {
    std::vector<torch::Tensor> t{torch::tensor(values, torch::kFloat64)};
    all_reduce_sum(t);
    return std::vector<double>(t[0].data_ptr<double>(), t[0].data_ptr<double>() + t[0].numel());
}

void ProcessGroup::barrier() { impl_->wait(impl_->group->barrier(), "barrier"); }

std::string ProcessGroup::where() const { return impl_->where(); }
std::chrono::milliseconds ProcessGroup::timeout() const { return impl_->timeout; }
c10::intrusive_ptr<c10d::ProcessGroup> ProcessGroup::backend() const { return impl_->group; }

std::vector<std::string> ProcessGroup::all_gather_strings(const std::string& text) {
    // The lengths first (exact as doubles up to 2^53), then the bytes padded to the longest.
    const std::vector<double> lengths = all_gather({static_cast<double>(text.size())});
    const auto most = static_cast<int64_t>(*std::max_element(lengths.begin(), lengths.end()));
    std::vector<torch::Tensor> mine{torch::zeros({std::max<int64_t>(most, 1)}, torch::kUInt8)};
    std::copy(text.begin(), text.end(), static_cast<char*>(mine[0].data_ptr()));
    std::vector<std::vector<torch::Tensor>> all(1);
    for (int r = 0; r < size(); ++r) all[0].push_back(torch::zeros_like(mine[0]));
    impl_->wait(impl_->group->allgather(all, mine), "all-gather");
    std::vector<std::string> out;
    for (int r = 0; r < size(); ++r) {
        const auto* data = static_cast<const char*>(all[0][static_cast<size_t>(r)].data_ptr());
        out.emplace_back(data, static_cast<size_t>(lengths[static_cast<size_t>(r)]));
    }
    return out;
}

std::shared_ptr<ProcessGroup> join_process_group(const DistEnv& env, int timeout_s) {
    if (!env.distributed()) return nullptr;
    return std::make_shared<ProcessGroup>(env, std::chrono::milliseconds(1000LL * timeout_s));
}

}  // namespace hemoscan

// GradientSync on c10d::Reducer, the engine under PyTorch's DistributedDataParallel: autograd hooks on each
// parameter's gradient accumulator mark it ready; a full bucket is all-reduced asynchronously (divided by
// the world size), and the end of backward waits for the buckets and writes the means into .grad.
#include "hemoscan/dist/grad_sync.hpp"

#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>

#include "hemoscan/dist/process_group.hpp"
#include "hemoscan/error.hpp"

namespace hemoscan {

struct GradientSync::Impl {
    ProcessGroup& group;
    torch::nn::Module& module;
    size_t bucket_bytes;
    std::vector<bool> trainable;  // requires_grad of every parameter when the reducer was laid out
    std::unique_ptr<c10d::Reducer> reducer;

    std::vector<bool> trainable_now() const {
        std::vector<bool> t;
        for (const auto& p : module.parameters()) t.push_back(p.requires_grad());
        return t;
    }

    void lay_out() {
        trainable = trainable_now();
        std::vector<at::Tensor> params;
        for (const auto& p : module.parameters()) {
            if (p.requires_grad()) params.push_back(p);
        }
        reducer.reset();  // its hooks leave the accumulators before new ones come
        if (params.empty()) return;
        // As DDP: a small first bucket (the last layers' gradients, ready first) starts communication early.
        const std::vector<size_t> limits{static_cast<size_t>(c10d::kDefaultFirstBucketBytes), bucket_bytes};
        auto [buckets, bucket_limits] = c10d::compute_bucket_assignment_by_size(params, limits);
        std::reverse(buckets.begin(), buckets.end());
        std::reverse(bucket_limits.begin(), bucket_limits.end());
        // find_unused_parameters: a parameter outside this step's graph (frozen, unused by the task) is
        // marked ready with the others instead of stalling its bucket.
        reducer = std::make_unique<c10d::Reducer>(params, std::move(buckets), std::move(bucket_limits), group.backend(),
                                                  std::vector<bool>(params.size(), false),
                                                  static_cast<int64_t>(bucket_bytes), /*find_unused_parameters=*/true,
                                                  /*gradient_as_bucket_view=*/false,
                                                  std::unordered_map<size_t, std::string>{},
                                                  c10d::kDefaultFirstBucketBytes);
    }
};

GradientSync::GradientSync(ProcessGroup& group, torch::nn::Module& module, size_t bucket_bytes)
    : impl_(new Impl{group, module, bucket_bytes, {}, nullptr}) {
    impl_->lay_out();
}

GradientSync::~GradientSync() = default;

void GradientSync::backward(const torch::Tensor& loss) {
    Impl& s = *impl_;
    if (s.trainable_now() != s.trainable) s.lay_out();
    if (!s.reducer) {
        loss.backward();
        return;
    }
    try {
        s.reducer->prepare_for_forward();
        s.reducer->rebuild_buckets();
        s.reducer->prepare_for_backward({loss});
        loss.backward();
    } catch (const std::exception& e) {
        const std::string what = e.what();
        throw InputError(s.group.where() + ": the gradient all-reduce failed within " +
                         std::to_string(static_cast<double>(s.group.timeout().count()) / 1000.0) +
                         " s (a rank that stopped?): " + what.substr(0, what.find('\n')));
    }
}

}  // namespace hemoscan

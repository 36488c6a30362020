#pragma once
// Debian 12's libtorch-dev ships c10d/reducer.hpp (DistributedDataParallel's engine, exported by
// libtorch_cpu) but not the distributed-autograd headers it includes. reducer.hpp needs two names from
// this one: the gradient callback type (it static_asserts its own is the same) and the context pointer
// (a shared_ptr member: its size does not depend on the class). hemoscan uses neither; CMake adds this
// folder only where LibTorch lacks the real header (a pip/conda LibTorch has it).
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
public:
    using GradCallback = std::function<bool(at::Tensor&)>;
};
using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch

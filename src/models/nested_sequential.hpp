#pragma once
// nn::Sequential with a plain forward(), so that it can sit in another Sequential (AnyModule cannot hold a
// module whose forward is a template, as nn::Sequential's is): the nested Sequentials of torchvision's
// DenseNet and EfficientNet. Private to src/models (includes LibTorch).
#include <torch/torch.h>

namespace hemoscan {

class NestedSequentialImpl : public torch::nn::SequentialImpl {
public:
    using torch::nn::SequentialImpl::SequentialImpl;
    torch::Tensor forward(const torch::Tensor& x) { return torch::nn::SequentialImpl::forward(x); }
};
TORCH_MODULE(NestedSequential);

}  // namespace hemoscan

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hemoscan/util/runtime.hpp"

// LibTorch's BLAS (libblas.so.3 through Debian's alternatives) must be OpenBLAS: transposed
// convolutions go through BLAS and the reference BLAS is several times slower.
TEST(Runtime, TorchUsesOpenBlas) {
    auto a = torch::ones({64, 64});
    auto c = torch::mm(a, a);
    EXPECT_FLOAT_EQ(c[0][0].item<float>(), 64.f);
    auto info = hemoscan::blas_info();
    EXPECT_EQ(info.name.rfind("OpenBLAS", 0), 0u) << "BLAS in use: " << info.name;
}

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "hemoscan/data/batch_tensor.hpp"
#include "support/test_util.hpp"

namespace hemoscan {
namespace {

Batch make_batch(bool masks) {
    Batch b;
    b.n = 2;
    b.c = 3;
    b.h = 4;
    b.w = 5;
    b.num_labels = 2;
    b.images.resize(2 * 3 * 4 * 5);
    for (size_t i = 0; i < b.images.size(); ++i) b.images[i] = 0.5f * float(i);
    b.labels = {1, 0, 0, 1};
    if (masks) {
        b.masks.resize(2 * 4 * 5);
        for (size_t i = 0; i < b.masks.size(); ++i) b.masks[i] = static_cast<std::uint8_t>(i % 7);
    }
    b.indices = {8, 3};
    return b;
}

TEST(BatchTensor, ShapesTypesAndValues) {
    const Batch b = make_batch(true);
    const BatchTensors t = to_tensors(b);
    ASSERT_EQ(t.images.sizes(), (std::vector<int64_t>{2, 3, 4, 5}));
    EXPECT_EQ(t.images.dtype(), torch::kFloat32);
    ASSERT_EQ(t.labels.sizes(), (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(t.labels.dtype(), torch::kFloat32);
    ASSERT_TRUE(t.masks.defined());
    ASSERT_EQ(t.masks.sizes(), (std::vector<int64_t>{2, 4, 5}));
    EXPECT_EQ(t.masks.dtype(), torch::kInt64);
    EXPECT_TRUE(t.images.is_contiguous());
    EXPECT_EQ(t.indices, (std::vector<size_t>{8, 3}));
    // Element [n][c][y][x] sits at ((n*C + c)*H + y)*W + x.
    EXPECT_FLOAT_EQ(t.images[1][2][3][4].item<float>(), 0.5f * (((1 * 3 + 2) * 4 + 3) * 5 + 4));
    EXPECT_FLOAT_EQ(t.images[0][1][0][2].item<float>(), 0.5f * ((1 * 4 + 0) * 5 + 2));
    EXPECT_FLOAT_EQ(t.labels[0][0].item<float>(), 1.f);
    EXPECT_FLOAT_EQ(t.labels[1][0].item<float>(), 0.f);
    EXPECT_FLOAT_EQ(t.labels[1][1].item<float>(), 1.f);
    EXPECT_EQ(t.masks[1][2][3].item<int64_t>(), ((1 * 4 + 2) * 5 + 3) % 7);
    EXPECT_EQ(t.masks.sum().item<int64_t>(), [&] {
        int64_t s = 0;
        for (auto v : b.masks) s += v;
        return s;
    }());
    // The const overload copies: the batch is untouched.
    EXPECT_EQ(b.images.size(), 120u);
    EXPECT_FLOAT_EQ(b.images[7], 3.5f);
}

TEST(BatchTensor, MovingTakesTheMemoryWithoutACopy) {
    Batch b = make_batch(false);
    const float* images = b.images.data();
    const float* labels = b.labels.data();
    BatchTensors t = to_tensors(std::move(b));
    EXPECT_EQ(t.images.data_ptr<float>(), images);
    EXPECT_EQ(t.labels.data_ptr<float>(), labels);
    EXPECT_FALSE(t.masks.defined());  // no masks in the batch
    EXPECT_TRUE(b.images.empty());    // NOLINT(bugprone-use-after-move): documented to be left empty
    EXPECT_EQ(b.n, 0);
    // The tensors own the memory: it outlives the batch and views of it keep it alive.
    torch::Tensor view = t.images[1];
    t = BatchTensors{};
    EXPECT_FLOAT_EQ(view[0][0][1].item<float>(), 0.5f * 61);
}

TEST(BatchTensor, EmptyAndInconsistentBatches) {
    Batch empty;
    empty.c = 1;
    empty.h = 4;
    empty.w = 4;
    empty.num_labels = 1;
    const BatchTensors t = to_tensors(empty);
    EXPECT_EQ(t.images.sizes(), (std::vector<int64_t>{0, 1, 4, 4}));
    EXPECT_EQ(t.labels.sizes(), (std::vector<int64_t>{0, 1}));

    Batch bad = make_batch(false);
    bad.images.pop_back();
    EXPECT_THROW(to_tensors(bad), c10::Error);
}

TEST(BatchTensor, FromTheLoader) {
    test::TempDir dir;
    std::string csv = "id,a,b\n";
    for (int i = 0; i < 5; ++i) {
        ASSERT_TRUE(cv::imwrite((dir / ("s" + std::to_string(i) + ".png")).string(),
                                cv::Mat(6, 7, CV_8UC1, cv::Scalar(20 * i))));
        csv += "s" + std::to_string(i) + "," + std::to_string(i % 2) + "," + std::to_string(i / 3) + "\n";
    }
    test::write_text(dir / "labels.csv", csv);
    const Dataset ds = open_dataset(dir.path());
    PreprocessOptions p;
    p.resize.width = 7;
    p.resize.height = 6;
    p.normalization = Normalization::None;
    p.windows = parse_windows("rgb");
    LoaderOptions o;
    o.batch_size = 3;
    o.shuffle = false;
    DataLoader loader(ds, {0, 1, 2, 3, 4}, p, o);
    loader.start_epoch(0);
    Batch b;
    ASSERT_TRUE(loader.next(b));
    BatchTensors t = to_tensors(std::move(b));
    EXPECT_EQ(t.images.sizes(), (std::vector<int64_t>{3, 3, 6, 7}));
    EXPECT_EQ(t.labels.sizes(), (std::vector<int64_t>{3, 2}));
    EXPECT_FLOAT_EQ(t.images[2][1][5][6].item<float>(), 40.f / 255.f);
    EXPECT_FLOAT_EQ(t.labels[1][0].item<float>(), 1.f);
    EXPECT_FLOAT_EQ(t.labels[1][1].item<float>(), 0.f);
    ASSERT_TRUE(loader.next(b));
    t = to_tensors(std::move(b));
    EXPECT_EQ(t.images.size(0), 2);  // last partial batch
    EXPECT_FLOAT_EQ(t.labels[1][1].item<float>(), 1.f);  // item 4: a = 0, b = 1
}

}  // namespace
}  // namespace hemoscan

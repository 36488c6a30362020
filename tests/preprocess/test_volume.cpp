// preprocess_volume(): the slices of a series preprocessed in parallel equal preprocess() of each
// slice, in order, whatever the thread count; a bad slice's error comes out.
#include <gtest/gtest.h>

#include "hemoscan/error.hpp"
#include "hemoscan/preprocess/volume.hpp"

using namespace hemoscan;

namespace {

Volume random_ct(int slices, int size) {
    Volume v;
    cv::RNG rng(17);
    for (int i = 0; i < slices; ++i) {
        cv::Mat hu(size, size, CV_32FC1);
        rng.fill(hu, cv::RNG::UNIFORM, -1024.0, 2000.0);
        v.slices.push_back(hu);
        ImageMeta m;
        m.path = "slice" + std::to_string(i) + ".dcm";
        m.modality = "CT";
        m.is_hu = true;
        m.rows = m.cols = size;
        v.slice_meta.push_back(m);
    }
    return v;
}

PreprocessOptions rgb_to(int size) {
    PreprocessOptions o;
    o.windows = parse_windows("rgb");
    o.resize = ResizeOptions{size, size, false, 0.f};
    return o;
}

}  // namespace

TEST(PreprocessVolume, EqualsPerSlicePreprocessingInOrder) {
    const Volume v = random_ct(7, 40);
    const PreprocessOptions o = rgb_to(16);
    for (int threads : {1, 2, 3, 0}) {
        const auto out = preprocess_volume(v, o, threads);
        ASSERT_EQ(out.size(), 7u) << threads;
        for (size_t i = 0; i < out.size(); ++i) {
            const Sample want = preprocess(DicomSlice{v.slices[i], v.slice_meta[i]}, o);
            ASSERT_EQ(out[i].image.size(), cv::Size(16, 16));
            ASSERT_EQ(out[i].image.type(), CV_32FC3);
            EXPECT_EQ(cv::norm(out[i].image, want.image, cv::NORM_INF), 0.0) << "threads " << threads << " slice " << i;
            EXPECT_EQ(out[i].meta.path, v.slice_meta[i].path);
        }
    }
}

TEST(PreprocessVolume, ABadSliceThrowsItsError) {
    Volume v = random_ct(5, 24);
    v.slices[3] = cv::Mat();  // no pixels
    try {
        preprocess_volume(v, rgb_to(8), 2);
        FAIL() << "expected an InputError";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("slice3.dcm"), std::string::npos) << e.what();
    }
    v.slice_meta.pop_back();
    EXPECT_THROW(preprocess_volume(v, rgb_to(8), 2), UsageError);
}

// Slice context: sample k holds samples k-1, k, k+1 as channels (the ends repeated), its other fields
// stay; slices of another size cannot be stacked.
TEST(SliceContext, StacksNeighboursInOrder) {
    std::vector<Sample> slices(3);
    for (int k = 0; k < 3; ++k) {
        slices[static_cast<size_t>(k)].image = cv::Mat(2, 3, CV_32FC1, cv::Scalar(k + 1));
        slices[static_cast<size_t>(k)].id = "s" + std::to_string(k);
    }
    const auto same = stack_slice_context(slices, 0);
    EXPECT_EQ(same[1].image.channels(), 1);
    const auto stacked = stack_slice_context(slices, 1);
    ASSERT_EQ(stacked.size(), 3u);
    const std::vector<std::vector<float>> expected{{1, 1, 2}, {1, 2, 3}, {2, 3, 3}};
    for (size_t k = 0; k < 3; ++k) {
        ASSERT_EQ(stacked[k].image.channels(), 3);
        const float* v = stacked[k].image.ptr<float>(1) + 3 * 2;  // pixel (1, 2)
        EXPECT_EQ(std::vector<float>(v, v + 3), expected[k]) << k;
        EXPECT_EQ(stacked[k].id, slices[k].id);
    }
    EXPECT_EQ(slices[0].image.channels(), 1);  // the input is left alone
    slices[2].image = cv::Mat(3, 3, CV_32FC1, cv::Scalar(3));
    EXPECT_THROW(stack_slice_context(slices, 1), InputError);
}

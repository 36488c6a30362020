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

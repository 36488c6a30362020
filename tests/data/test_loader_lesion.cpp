// The loader paints lesions (--insert-lesions) into augmented training images only and sets the
// chosen labels of a painted image to 1.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "hemoscan/data/dataset.hpp"
#include "hemoscan/data/loader.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

TEST(Lesion, LoaderMakesPaintedImagesPositive) {
    test::TempDir dir;
    std::string csv = "path,any,subdural\n";
    for (int i = 0; i < 6; ++i) {
        cv::Mat g8;
        test::brain_window_head(1, static_cast<unsigned>(i)).convertTo(g8, CV_8UC1, 255.0);
        const std::string name = "h" + std::to_string(i) + ".png";
        ASSERT_TRUE(cv::imwrite((dir / name).string(), g8));
        csv += name + ",0,0\n";
    }
    test::write_text(dir / "manifest.csv", csv);
    const Dataset ds = open_dataset(dir.path());
    PreprocessOptions p;
    p.resize.width = p.resize.height = 128;
    LoaderOptions o;
    o.batch_size = 6;
    o.shuffle = false;
    o.augment = true;
    o.lesion.probability = 1;
    o.lesion_labels = {0};  // "any"
    auto labels_of = [&](const LoaderOptions& opt) {
        DataLoader loader(ds, {0, 1, 2, 3, 4, 5}, p, opt);
        loader.start_epoch(0);
        Batch b;
        EXPECT_TRUE(loader.next(b));
        return b.labels;
    };
    const std::vector<float> painted = labels_of(o);
    ASSERT_EQ(painted.size(), 12u);
    for (int i = 0; i < 6; ++i) {
        EXPECT_EQ(painted[static_cast<size_t>(2 * i)], 1.f) << i;      // any
        EXPECT_EQ(painted[static_cast<size_t>(2 * i + 1)], 0.f) << i;  // subdural untouched
    }
    LoaderOptions plain = o;
    plain.augment = false;  // validation loaders: no painting, the file's labels
    for (float y : labels_of(plain)) EXPECT_EQ(y, 0.f);
}

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <chrono>
#include <array>
#include <map>
#include <set>

#include "hemoscan/data/loader.hpp"
#include "hemoscan/error.hpp"
#include "support/test_util.hpp"

namespace hemoscan {
namespace {

using test::TempDir;
using test::write_text;
namespace fs = std::filesystem;

constexpr int kW = 8, kH = 6;  // image size on disk and after preprocessing (no resampling)

// Pixel (y, x) of image i: 10 i + x + y, so a value tells which item and where it came from.
int pixel_value(size_t i, int y, int x) { return static_cast<int>(10 * (i % 20)) + x + y; }

// A labels.csv data set of n gray 8-bit PNGs; label 1 for odd items.
void make_dataset(const fs::path& dir, size_t n) {
    std::string csv = "id,hemorrhage\n";
    for (size_t i = 0; i < n; ++i) {
        cv::Mat img(kH, kW, CV_8UC1);
        for (int y = 0; y < kH; ++y)
            for (int x = 0; x < kW; ++x) img.at<uchar>(y, x) = static_cast<uchar>(pixel_value(i, y, x));
        char id[24];
        std::snprintf(id, sizeof id, "%03zu", i);
        ASSERT_TRUE(cv::imwrite((dir / (std::string(id) + ".png")).string(), img));
        csv += std::string(id) + "," + (i % 2 ? "1" : "0") + "\n";
    }
    write_text(dir / "labels.csv", csv);
}

PreprocessOptions plain_preprocess(int channels = 1) {
    PreprocessOptions p;
    p.resize.width = kW;
    p.resize.height = kH;
    p.normalization = Normalization::None;  // 8-bit input -> value / 255, nothing else
    if (channels == 3) p.windows = parse_windows("rgb");
    return p;
}

LoaderOptions options(int batch, int workers = 2, std::uint64_t seed = 1) {
    LoaderOptions o;
    o.batch_size = batch;
    o.workers = workers;
    o.seed = seed;
    return o;
}

std::vector<size_t> all_indices(const Dataset& ds) {
    std::vector<size_t> v(ds.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = i;
    return v;
}

std::vector<Batch> run_epoch(DataLoader& loader, std::uint64_t epoch) {
    loader.start_epoch(epoch);
    std::vector<Batch> out;
    Batch b;
    while (loader.next(b)) out.push_back(std::move(b));
    return out;
}

struct Data {
    TempDir dir;
    Dataset ds;
    explicit Data(size_t n) {
        make_dataset(dir.path(), n);
        ds = open_dataset(dir.path());
    }
};

TEST(Loader, EveryItemOncePerEpochWithItsPixelsAndLabels) {
    Data d(10);
    LoaderOptions o = options(4);
    o.shuffle = true;
    DataLoader loader(d.ds, all_indices(d.ds), plain_preprocess(3), o);
    EXPECT_EQ(loader.size(), 10u);
    EXPECT_EQ(loader.batches_per_epoch(), 3u);
    std::vector<size_t> first_order;
    for (std::uint64_t epoch = 0; epoch < 3; ++epoch) {
        const std::vector<Batch> batches = run_epoch(loader, epoch);
        ASSERT_EQ(batches.size(), 3u);
        std::vector<size_t> seen;
        for (size_t k = 0; k < batches.size(); ++k) {
            const Batch& b = batches[k];
            ASSERT_EQ(b.n, k < 2 ? 4 : 2);  // the last batch is partial
            ASSERT_EQ(b.c, 3);
            ASSERT_EQ(b.h, kH);
            ASSERT_EQ(b.w, kW);
            ASSERT_EQ(b.num_labels, 1);
            ASSERT_EQ(b.images.size(), size_t(b.n) * 3 * kH * kW);
            ASSERT_EQ(b.labels.size(), size_t(b.n));
            ASSERT_EQ(b.indices.size(), size_t(b.n));
            EXPECT_TRUE(b.masks.empty());
            for (int j = 0; j < b.n; ++j) {
                const size_t item = b.indices[j];
                seen.push_back(item);
                EXPECT_EQ(b.labels[j], item % 2 ? 1.f : 0.f);
                // N x C x H x W: every channel holds the same gray image (8-bit input replicated).
                for (int c = 0; c < 3; ++c)
                    for (int y = 0; y < kH; ++y)
                        for (int x = 0; x < kW; ++x) {
                            const float v = b.images[((size_t(j) * 3 + c) * kH + y) * kW + x];
                            ASSERT_NEAR(v, pixel_value(item, y, x) / 255.f, 1e-6)
                                << "item " << item << " c" << c << " y" << y << " x" << x;
                        }
            }
        }
        std::vector<size_t> sorted = seen;
        std::sort(sorted.begin(), sorted.end());
        EXPECT_EQ(sorted, all_indices(d.ds)) << "epoch " << epoch;
        if (epoch == 0) first_order = seen;
        else EXPECT_NE(seen, first_order) << "the shuffle does not change with the epoch";
    }
}

TEST(Loader, SubsetInOrderWithoutShuffleAndDropLast) {
    Data d(10);
    LoaderOptions o = options(2);
    o.shuffle = false;
    o.drop_last = true;
    DataLoader loader(d.ds, {9, 1, 3, 5, 7}, plain_preprocess(), o);
    EXPECT_EQ(loader.batches_per_epoch(), 2u);
    const std::vector<Batch> batches = run_epoch(loader, 0);
    ASSERT_EQ(batches.size(), 2u);
    EXPECT_EQ(batches[0].indices, (std::vector<size_t>{9, 1}));
    EXPECT_EQ(batches[1].indices, (std::vector<size_t>{3, 5}));
    EXPECT_EQ(batches[0].c, 1);
    EXPECT_NEAR(batches[0].images[0], pixel_value(9, 0, 0) / 255.f, 1e-6);
    Batch b;
    EXPECT_FALSE(loader.next(b));  // stays at the end until the next epoch
}

TEST(Loader, NextWithoutStartEpochAndWithoutWorkers) {
    Data d(5);
    LoaderOptions o = options(2, /*workers=*/0);
    o.shuffle = false;
    DataLoader loader(d.ds, all_indices(d.ds), plain_preprocess(), o);
    Batch b;
    std::vector<size_t> seen;
    while (loader.next(b)) seen.insert(seen.end(), b.indices.begin(), b.indices.end());
    EXPECT_EQ(seen, (std::vector<size_t>{0, 1, 2, 3, 4}));
}

bool same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
    if (a.size() != b.size()) return false;
    for (size_t k = 0; k < a.size(); ++k) {
        if (a[k].indices != b[k].indices || a[k].images != b[k].images || a[k].labels != b[k].labels) return false;
    }
    return true;
}

TEST(Loader, DeterministicForASeedWithTwoWorkers) {
    Data d(24);
    LoaderOptions o = options(5, 2, 123);
    o.augment = true;
    o.prefetch = 3;
    std::vector<std::vector<Batch>> runs;
    for (int run = 0; run < 2; ++run) {
        DataLoader loader(d.ds, all_indices(d.ds), plain_preprocess(), o);
        runs.push_back(run_epoch(loader, 0));
        auto second = run_epoch(loader, 1);
        runs.back().insert(runs.back().end(), second.begin(), second.end());
    }
    EXPECT_TRUE(same_batches(runs[0], runs[1]));
    // The same with one worker, or none: thread count does not change the result.
    for (int workers : {1, 0}) {
        LoaderOptions o1 = o;
        o1.workers = workers;
        DataLoader loader(d.ds, all_indices(d.ds), plain_preprocess(), o1);
        auto batches = run_epoch(loader, 0);
        auto second = run_epoch(loader, 1);
        batches.insert(batches.end(), second.begin(), second.end());
        EXPECT_TRUE(same_batches(batches, runs[0])) << workers << " workers";
    }
    // Another seed: another order.
    LoaderOptions o2 = o;
    o2.seed = 124;
    DataLoader other(d.ds, all_indices(d.ds), plain_preprocess(), o2);
    EXPECT_FALSE(same_batches(run_epoch(other, 0), std::vector<Batch>(runs[0].begin(), runs[0].begin() + 5)));
}

TEST(Loader, AugmentationChangesPixelsReproducibly) {
    Data d(6);
    LoaderOptions o = options(6, 2, 9);
    o.shuffle = false;
    DataLoader plain(d.ds, all_indices(d.ds), plain_preprocess(), o);
    const Batch clean = run_epoch(plain, 0).at(0);

    o.augment = true;
    o.augment_options.p_hflip = 1.0;  // at least the flip changes every (left-right asymmetric) image
    DataLoader aug_a(d.ds, all_indices(d.ds), plain_preprocess(), o);
    DataLoader aug_b(d.ds, all_indices(d.ds), plain_preprocess(), o);
    const Batch a0 = run_epoch(aug_a, 0).at(0);
    const Batch b0 = run_epoch(aug_b, 0).at(0);
    const Batch a1 = run_epoch(aug_a, 1).at(0);
    ASSERT_EQ(a0.images.size(), clean.images.size());
    EXPECT_EQ(a0.indices, clean.indices);
    EXPECT_EQ(a0.labels, clean.labels);  // labels are not augmented
    const size_t plane = size_t(kH) * kW;
    for (int j = 0; j < a0.n; ++j) {
        const std::vector<float> x(clean.images.begin() + j * plane, clean.images.begin() + (j + 1) * plane);
        const std::vector<float> y(a0.images.begin() + j * plane, a0.images.begin() + (j + 1) * plane);
        EXPECT_NE(x, y) << "sample " << j << " not augmented";
    }
    EXPECT_EQ(a0.images, b0.images);  // same seed, same epoch: same augmentation
    EXPECT_NE(a0.images, a1.images);  // next epoch: new draws
    // Augmentation works on a copy: the cached sample stays clean, so epoch 0 comes back the same.
    EXPECT_EQ(run_epoch(aug_a, 0).at(0).images, a0.images);
}

TEST(Loader, CorruptImageIsReportedByNext) {
    Data d(9);
    write_text(d.dir / "004.png", "this is not a png");
    for (int workers : {2, 0}) {
        LoaderOptions o = options(2, workers);
        DataLoader loader(d.ds, all_indices(d.ds), plain_preprocess(), o);
        loader.start_epoch(0);
        Batch b;
        std::string message;
        size_t delivered = 0;
        try {
            while (loader.next(b)) delivered += b.n;
            FAIL() << "no error for the corrupt image";
        } catch (const InputError& e) {
            message = e.what();
        }
        EXPECT_NE(message.find("004.png"), std::string::npos) << message;
        EXPECT_LT(delivered, 9u);
        EXPECT_FALSE(loader.next(b));  // the epoch ended with the error
        // A later epoch reports it again rather than skipping the file.
        loader.start_epoch(1);
        EXPECT_THROW(
            {
                while (loader.next(b)) {
                }
            },
            InputError);
    }
}

TEST(Loader, DestroyingMidEpochDoesNotHang) {
    Data d(40);
    const auto t0 = std::chrono::steady_clock::now();
    for (int round = 0; round < 20; ++round) {
        LoaderOptions o = options(3, 2, round);
        o.augment = round % 2 == 1;
        o.prefetch = 1 + round % 3;
        DataLoader loader(d.ds, all_indices(d.ds), plain_preprocess(), o);
        if (round % 4 == 0) continue;  // never started
        loader.start_epoch(0);
        if (round % 4 == 1) continue;  // started, nothing taken
        Batch b;
        ASSERT_TRUE(loader.next(b));
        if (round % 4 == 2) continue;  // one batch taken
        loader.start_epoch(1);        // restart mid-epoch, then leave
        ASSERT_TRUE(loader.next(b));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(seconds, 20.0);
}

TEST(Loader, SmallSetsAreCachedDecoded) {
    Data d(6);
    LoaderOptions o = options(3);
    DataLoader cached(d.ds, all_indices(d.ds), plain_preprocess(), o);
    o.cache_max_bytes = 0;
    DataLoader uncached(d.ds, all_indices(d.ds), plain_preprocess(), o);
    const auto first = run_epoch(cached, 0);
    EXPECT_TRUE(same_batches(first, run_epoch(uncached, 0)));
    // With the files gone only the cached loader can still deliver.
    for (const auto& item : d.ds.items) fs::remove(item.path);
    EXPECT_TRUE(same_batches(run_epoch(cached, 0), first));
    uncached.start_epoch(1);
    Batch b;
    EXPECT_THROW(uncached.next(b), InputError);
}

TEST(Loader, ManifestMasksTravelWithTheirImages) {
    TempDir dir;
    std::string csv = "path,mask,hemorrhage\n";
    for (int i = 0; i < 3; ++i) {
        cv::Mat img(kH, kW, CV_8UC1, cv::Scalar(50 + i));
        cv::Mat mask = cv::Mat::zeros(kH, kW, CV_8UC1);
        mask(cv::Rect(i, 1, 2, 3)).setTo(i + 1);  // a small block whose place and value identify the item
        const std::string n = std::to_string(i);
        ASSERT_TRUE(cv::imwrite((dir / ("img" + n + ".png")).string(), img));
        ASSERT_TRUE(cv::imwrite((dir / ("mask" + n + ".png")).string(), mask));
        csv += "img" + n + ".png," + (i == 2 ? std::string() : "mask" + n + ".png") + "," + (i ? "1" : "0") + "\n";
    }
    write_text(dir / "manifest.csv", csv);
    const Dataset ds = open_dataset(dir.path());
    LoaderOptions o = options(3);
    o.shuffle = false;
    DataLoader loader(ds, all_indices(ds), plain_preprocess(), o);
    const Batch b = run_epoch(loader, 0).at(0);
    ASSERT_EQ(b.masks.size(), size_t(3) * kH * kW);
    for (int i = 0; i < 3; ++i) {
        for (int y = 0; y < kH; ++y) {
            for (int x = 0; x < kW; ++x) {
                const bool inside = i < 2 && x >= i && x < i + 2 && y >= 1 && y < 4;  // item 2 has no mask
                EXPECT_EQ(b.masks[(size_t(i) * kH + y) * kW + x], inside ? i + 1 : 0) << i << " " << y << " " << x;
            }
        }
    }
    // load_sample gives the same, plus the item's identity.
    const Sample s = load_sample(ds, 1, plain_preprocess());
    EXPECT_EQ(s.id, "img1.png");
    EXPECT_EQ(s.labels, (std::vector<float>{1}));
    ASSERT_EQ(s.mask.size(), cv::Size(kW, kH));
    EXPECT_EQ(s.mask.at<uchar>(1, 1), 2);
    EXPECT_EQ(s.mask.at<uchar>(0, 1), 0);
}

// Slice context: each sample holds slices k-1, k, k+1 of its study (ends repeated) as channel blocks,
// in the order of the manifest's `slice` column, not of the rows; with augmentation one draw moves all.
TEST(Loader, SliceContextStacksStudyNeighbours) {
    TempDir dir;
    make_dataset(dir.path(), 5);
    write_text(dir / "manifest.csv",
               "path,study,slice,hemorrhage\n000.png,s1,3,0\n001.png,s1,1,1\n002.png,s1,2,0\n"
               "003.png,s2,0,1\n004.png,s2,1,0\n");
    const Dataset ds = open_dataset(dir.path());
    ASSERT_TRUE(ds.ordered);
    LoaderOptions o = options(5, 2);
    o.shuffle = false;
    o.context = 1;
    DataLoader loader(ds, all_indices(ds), plain_preprocess(3), o);
    const std::vector<Batch> batches = run_epoch(loader, 0);
    ASSERT_EQ(batches.size(), 1u);
    const Batch& b = batches[0];
    ASSERT_EQ(b.c, 9);
    // Item -> the items whose pixels its three blocks hold.
    const std::map<size_t, std::array<size_t, 3>> expected{
        {1, {1, 1, 2}}, {2, {1, 2, 0}}, {0, {2, 0, 0}}, {3, {3, 3, 4}}, {4, {3, 4, 4}}};
    for (int j = 0; j < b.n; ++j) {
        const size_t item = b.indices[static_cast<size_t>(j)];
        for (int c = 0; c < 9; ++c) {
            const size_t source = expected.at(item)[static_cast<size_t>(c / 3)];
            const float v = b.images[((size_t(j) * 9 + c) * kH + 2) * kW + 3];
            EXPECT_NEAR(v, pixel_value(source, 2, 3) / 255.f, 1e-6) << "item " << item << " channel " << c;
        }
        EXPECT_EQ(b.labels[static_cast<size_t>(j)], item == 1 || item == 3 ? 1.f : 0.f);
    }
    o.augment = true;
    DataLoader augmented(ds, all_indices(ds), plain_preprocess(3), o);
    const std::vector<Batch> moved = run_epoch(augmented, 0);
    ASSERT_EQ(moved.size(), 1u);
    EXPECT_EQ(moved[0].c, 9);
    // An unordered data set has no neighbours to give.
    Data plain(4);
    test::expect_usage_error([&] { DataLoader bad(plain.ds, all_indices(plain.ds), plain_preprocess(3), o); },
                             {"`context`", "slice"});
}

TEST(Loader, BadOptions) {
    Data d(2);
    EXPECT_THROW(DataLoader(d.ds, {0, 1}, plain_preprocess(), options(0)), UsageError);
    EXPECT_THROW(DataLoader(d.ds, {0, 5}, plain_preprocess(), options(2)), UsageError);
    EXPECT_THROW(load_sample(d.ds, 7, plain_preprocess()), UsageError);
}

}  // namespace
}  // namespace hemoscan

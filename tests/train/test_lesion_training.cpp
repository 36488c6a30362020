// --insert-lesions in training: recorded with the run, and refused where a painted bleed has no
// meaning (class folders, several labels without "any", segmentation, no augmentation, p outside 0..1).
#include <gtest/gtest.h>

#include "hemoscan/error.hpp"
#include "hemoscan/train/segment.hpp"
#include "hemoscan/train/trainer.hpp"
#include "hemoscan/util/fs.hpp"
#include "nlohmann/json.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"
#include "train/small_options.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

// Refused with a message naming `part`, and no run folder left behind.
void expect_refused(const TrainOptions& o, const std::string& part) {
    test::expect_usage_error([&] { train_classifier(o); }, {part});
    EXPECT_FALSE(fs::exists(o.out)) << "a refused run left " << o.out;
}

}  // namespace

TEST(LesionTraining, RecordedAndRefusedWhereMeaningless) {
    test::TempDir d;
    test::write_blob_dataset(d / "data", 8);
    TrainOptions o = test::small_options(d / "data", d / "run");
    o.epochs = 1;
    o.augment = true;
    o.insert_lesions = 0.5;
    train_classifier(o);
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(read_file(d / "run" / "config.json"))["options"]["insert_lesions"].get<double>(),
                     0.5);
    EXPECT_DOUBLE_EQ(load_run_options(d / "run").insert_lesions, 0.5);

    o.out = (d / "bad").string();
    o.insert_lesions = 1.5;
    expect_refused(o, "`insert_lesions` must be in 0..1");
    o.insert_lesions = 0.5;
    o.augment = false;
    expect_refused(o, "`augment` on");
    o.augment = true;
    o.normalization = "zscore";
    expect_refused(o, "`normalization` unit");
    o.normalization = "unit";

    test::write_blob_class_folders(d / "folders", 4);
    o.data = (d / "folders").string();
    expect_refused(o, "not class folders");

    // Two labels, neither "any": which one a painted bleed would set is unknown.
    std::string csv = "path,epidural,subdural\n";
    for (const auto& e : fs::directory_iterator(d / "data")) {
        if (e.path().extension() == ".png") csv += e.path().string() + ",0,1\n";
    }
    test::write_text(d / "two" / "manifest.csv", csv);
    o.data = (d / "two").string();
    expect_refused(o, "none is \"any\"");

    o.task = "segment";
    o.model = "unet";
    test::expect_usage_error([&] { train_segmenter(o); }, {"`insert_lesions`"});
}

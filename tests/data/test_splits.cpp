#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/error.hpp"
#include "support/test_util.hpp"

namespace hemoscan {
namespace {

// 30 patients with 1-4 images each; 12 of them positive (all their images), the rest negative.
Dataset thirty_patients() {
    Dataset ds;
    ds.root = "/data";
    ds.label_names = {"hemorrhage"};
    for (int p = 0; p < 30; ++p) {
        const int images = 1 + (p * 7 + p / 3) % 4;
        const bool positive = p % 5 < 2;
        for (int i = 0; i < images; ++i) {
            DatasetItem item;
            item.id = "p" + std::to_string(p) + "_" + std::to_string(i);
            item.path = ds.root / (item.id + ".png");
            item.patient = "p" + std::to_string(p);
            item.labels = {positive ? 1.f : 0.f};
            ds.items.push_back(item);
        }
    }
    return ds;
}

// Three classes, 24 patients with 1-3 images each.
Dataset three_classes() {
    Dataset ds;
    ds.root = "/data";
    ds.multiclass = true;
    ds.label_names = {"a", "b", "c"};
    for (int p = 0; p < 24; ++p) {
        const int k = p % 3;
        for (int i = 0; i <= p % 3; ++i) {
            DatasetItem item;
            item.id = "q" + std::to_string(p) + "_" + std::to_string(i);
            item.path = ds.root / (item.id + ".png");
            item.patient = "q" + std::to_string(p);
            item.class_index = k;
            item.labels = {0, 0, 0};
            item.labels[k] = 1;
            ds.items.push_back(item);
        }
    }
    return ds;
}

void expect_grouped(const Dataset& ds, const std::vector<int>& side) {
    std::map<std::string, int> of_patient;
    for (size_t i = 0; i < ds.size(); ++i) {
        auto [it, inserted] = of_patient.emplace(ds.items[i].patient, side[i]);
        EXPECT_EQ(it->second, side[i]) << "patient " << ds.items[i].patient << " is in two parts";
    }
}

TEST(Splits, GroupedStratifiedFoldsAreGroupedBalancedAndStratified) {
    const Dataset ds = thirty_patients();
    ASSERT_EQ(ds.patient_count(), 30u);
    const int k = 5;
    const std::vector<int> folds = grouped_stratified_folds(ds, k, 42);
    ASSERT_EQ(folds.size(), ds.size());
    expect_grouped(ds, folds);

    std::vector<int> size(k, 0), positives(k, 0);
    for (size_t i = 0; i < ds.size(); ++i) {
        ASSERT_GE(folds[i], 0);
        ASSERT_LT(folds[i], k);
        ++size[folds[i]];
        positives[folds[i]] += ds.items[i].labels[0] > 0.5f;
    }
    const int total_pos = std::count_if(ds.items.begin(), ds.items.end(), [](const DatasetItem& it) {
        return it.labels[0] > 0.5f;
    });
    for (int f = 0; f < k; ++f) {
        EXPECT_GT(positives[f], 0) << "fold " << f << " has no positive";
        EXPECT_LT(positives[f], size[f]) << "fold " << f << " has no negative";
        // Each fold holds about a fifth of the positives and of all images (groups are up to 4 images).
        EXPECT_NEAR(positives[f], total_pos / double(k), 3.0) << "fold " << f;
    }
    const auto [lo, hi] = std::minmax_element(size.begin(), size.end());
    EXPECT_LE(*hi - *lo, 4) << "fold sizes too uneven";
}

TEST(Splits, FoldsAreSeeded) {
    const Dataset ds = thirty_patients();
    const std::vector<int> a = grouped_stratified_folds(ds, 5, 1);
    EXPECT_EQ(grouped_stratified_folds(ds, 5, 1), a);
    EXPECT_NE(grouped_stratified_folds(ds, 5, 2), a);
    EXPECT_NE(grouped_stratified_folds(ds, 5, 3), a);
}

TEST(Splits, FoldsForClassFoldersHoldEveryClass) {
    const Dataset ds = three_classes();
    const int k = 4;
    const std::vector<int> folds = grouped_stratified_folds(ds, k, 7);
    expect_grouped(ds, folds);
    std::vector<std::set<int>> classes(k);
    for (size_t i = 0; i < ds.size(); ++i) classes[folds[i]].insert(ds.items[i].class_index);
    for (int f = 0; f < k; ++f) EXPECT_EQ(classes[f].size(), 3u) << "fold " << f;
}

TEST(Splits, ImpossibleK) {
    const Dataset ds = thirty_patients();
    EXPECT_THROW(grouped_stratified_folds(ds, 31, 0), UsageError);
    EXPECT_THROW(grouped_stratified_folds(ds, 1, 0), UsageError);
    EXPECT_NO_THROW(grouped_stratified_folds(ds, 30, 0));
    // k == patients: one patient per fold.
    const std::vector<int> folds = grouped_stratified_folds(ds, 30, 0);
    EXPECT_EQ(std::set<int>(folds.begin(), folds.end()).size(), 30u);
}

TEST(Splits, FoldSplit) {
    const std::vector<int> folds{0, 1, 2, 1, 0};
    const Split s = fold_split(folds, 1);
    EXPECT_EQ(s.val, (std::vector<size_t>{1, 3}));
    EXPECT_EQ(s.train, (std::vector<size_t>{0, 2, 4}));
    EXPECT_THROW(fold_split(folds, 3), UsageError);
    EXPECT_THROW(fold_split(folds, -1), UsageError);
}

TEST(Splits, HoldoutIsGroupedStratifiedAndNearTheFraction) {
    const Dataset ds = thirty_patients();
    for (double fraction : {0.2, 0.3, 0.5}) {
        const Split s = holdout_split(ds, fraction, 11);
        ASSERT_EQ(s.train.size() + s.val.size(), ds.size());
        std::vector<int> side(ds.size(), -1);
        for (size_t i : s.train) side[i] = 0;
        for (size_t i : s.val) side[i] = 1;
        EXPECT_EQ(std::count(side.begin(), side.end(), -1), 0);
        expect_grouped(ds, side);
        EXPECT_NEAR(double(s.val.size()), fraction * ds.size(), 3.0) << "fraction " << fraction;
        int val_pos = 0;
        for (size_t i : s.val) val_pos += ds.items[i].labels[0] > 0.5f;
        EXPECT_GT(val_pos, 0);
        EXPECT_LT(val_pos, int(s.val.size()));
        EXPECT_TRUE(std::is_sorted(s.train.begin(), s.train.end()));
        EXPECT_TRUE(std::is_sorted(s.val.begin(), s.val.end()));
    }
    EXPECT_EQ(holdout_split(ds, 0.2, 11).val, holdout_split(ds, 0.2, 11).val);
    EXPECT_NE(holdout_split(ds, 0.2, 11).val, holdout_split(ds, 0.2, 12).val);
    EXPECT_THROW(holdout_split(ds, 0.0, 1), UsageError);
    EXPECT_THROW(holdout_split(ds, 1.0, 1), UsageError);
}

TEST(Splits, HoldoutNeedsTwoPatientsAndNeverLeavesASideEmpty) {
    Dataset ds = thirty_patients();
    for (auto& item : ds.items) item.patient = "same";
    EXPECT_THROW(holdout_split(ds, 0.2, 1), UsageError);
    ds.items.resize(2);
    ds.items[1].patient = "other";
    const Split s = holdout_split(ds, 0.1, 1);  // 10% of 2 rounds to nobody; one still goes to val
    EXPECT_EQ(s.train.size(), 1u);
    EXPECT_EQ(s.val.size(), 1u);
}

TEST(Splits, WrittenAsCsv) {
    test::TempDir dir;
    Dataset ds = thirty_patients();
    ds.root = dir.path();
    for (auto& item : ds.items) item.path = ds.root / "img" / (item.id + ".png");
    ds.items[0].id = "with,comma";
    const std::vector<int> folds = grouped_stratified_folds(ds, 3, 5);
    write_split_csv(dir / "run/folds.csv", ds, folds);
    const CsvTable t = read_csv(dir / "run/folds.csv");
    ASSERT_EQ(t.header, (std::vector<std::string>{"path", "id", "patient", "fold"}));
    ASSERT_EQ(t.rows.size(), ds.size());
    EXPECT_EQ(t.rows[0][0], "img/" + ds.items[0].path.filename().string());
    EXPECT_EQ(t.rows[0][1], "with,comma");
    for (size_t i = 0; i < ds.size(); ++i) {
        EXPECT_EQ(t.rows[i][2], ds.items[i].patient);
        EXPECT_EQ(t.rows[i][3], std::to_string(folds[i]));
    }

    const Split s = holdout_split(ds, 0.25, 5);
    write_split_csv(dir / "run/split.csv", ds, s);
    const CsvTable h = read_csv(dir / "run/split.csv");
    ASSERT_EQ(h.header, (std::vector<std::string>{"path", "id", "patient", "set"}));
    ASSERT_EQ(h.rows.size(), ds.size());
    for (size_t i : s.val) EXPECT_EQ(h.rows[i][3], "val");
    for (size_t i : s.train) EXPECT_EQ(h.rows[i][3], "train");
    EXPECT_THROW(write_split_csv(dir / "x.csv", ds, std::vector<int>{0, 1}), UsageError);
}

}  // namespace
}  // namespace hemoscan

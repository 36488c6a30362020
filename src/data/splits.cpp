// Grouped, stratified splits: all images of one patient land on the same side, and each side gets
// about its share of every stratum (the first label's 0/1, or the class).
#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "data/detail.hpp"
#include "hemoscan/data/csv.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/util/fs.hpp"

namespace hemoscan {

namespace {

struct Group {
    std::vector<size_t> items;
    std::vector<size_t> counts;  // items per stratum
};

struct Groups {
    std::vector<Group> groups;   // in order of first appearance
    std::vector<size_t> totals;  // items per stratum over the whole set
};

Groups make_groups(const Dataset& dataset) {
    const size_t strata = dataset.multiclass ? std::max<size_t>(dataset.label_names.size(), 1) : 2;
    Groups g;
    g.totals.assign(strata, 0);
    std::unordered_map<std::string, size_t> index;
    for (size_t i = 0; i < dataset.items.size(); ++i) {
        const DatasetItem& item = dataset.items[i];
        size_t s = 0;
        if (dataset.multiclass) {
            s = item.class_index >= 0 ? std::min(static_cast<size_t>(item.class_index), strata - 1) : 0;
        } else if (!item.labels.empty()) {
            s = item.labels[0] > 0.5f ? 1 : 0;
        }
        auto [it, inserted] = index.emplace(item.patient, g.groups.size());
        if (inserted) g.groups.push_back(Group{{}, std::vector<size_t>(strata, 0)});
        Group& group = g.groups[it->second];
        group.items.push_back(i);
        ++group.counts[s];
        ++g.totals[s];
    }
    return g;
}

// The order groups are placed in: a seeded shuffle, then the largest first (greedy packing works
// best when the big pieces go first; equal sizes keep their shuffled order).
std::vector<size_t> placement_order(const Groups& g, std::uint64_t seed) {
    std::vector<size_t> order(g.groups.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    data_detail::seeded_shuffle(order, seed);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return g.groups[a].items.size() > g.groups[b].items.size();
    });
    return order;
}

}  // namespace

std::vector<int> grouped_stratified_folds(const Dataset& dataset, int k, std::uint64_t seed) {
    if (k < 2) throw UsageError("k-fold needs k >= 2 (got " + std::to_string(k) + ")");
    const Groups g = make_groups(dataset);
    if (g.groups.size() < static_cast<size_t>(k)) {
        throw UsageError("cannot make " + std::to_string(k) + " folds from " + std::to_string(g.groups.size()) +
                         " patients in " + dataset.root.string() + " (k must not exceed the number of patients)");
    }
    const size_t strata = g.totals.size();
    std::vector<std::vector<size_t>> fold_counts(k, std::vector<size_t>(strata, 0));
    std::vector<size_t> fold_size(k, 0);
    std::vector<int> folds(dataset.items.size(), 0);

    for (size_t gi : placement_order(g, seed)) {
        const Group& group = g.groups[gi];
        // Put the group where its strata are least filled (relative to each stratum's total); ties
        // go to the smaller fold, so empty folds are filled first.
        int best = 0;
        double best_cost = std::numeric_limits<double>::infinity();
        for (int f = 0; f < k; ++f) {
            double cost = 0;
            for (size_t s = 0; s < strata; ++s) {
                if (group.counts[s]) {
                    cost += double(group.counts[s]) * double(fold_counts[f][s]) / double(g.totals[s]);
                }
            }
            const bool better = cost < best_cost - 1e-12 ||
                                (std::abs(cost - best_cost) <= 1e-12 && fold_size[f] < fold_size[best]);
            if (better) {
                best = f;
                best_cost = cost;
            }
        }
        for (size_t s = 0; s < strata; ++s) fold_counts[best][s] += group.counts[s];
        fold_size[best] += group.items.size();
        for (size_t i : group.items) folds[i] = best;
    }
    return folds;
}

Split holdout_split(const Dataset& dataset, double val_fraction, std::uint64_t seed) {
    if (!(val_fraction > 0 && val_fraction < 1)) {
        throw UsageError("the validation fraction must be between 0 and 1 (got " + std::to_string(val_fraction) + ")");
    }
    const Groups g = make_groups(dataset);
    if (g.groups.size() < 2) {
        throw UsageError("a holdout split needs at least 2 patients; " + dataset.root.string() + " has " +
                         std::to_string(g.groups.size()));
    }
    const size_t strata = g.totals.size();
    std::vector<double> target(strata);
    for (size_t s = 0; s < strata; ++s) target[s] = val_fraction * double(g.totals[s]);
    std::vector<double> val_counts(strata, 0);

    auto error_with = [&](const Group& group, bool add) {
        double e = 0;
        for (size_t s = 0; s < strata; ++s) {
            const double d = val_counts[s] + (add ? double(group.counts[s]) : 0.0) - target[s];
            e += d * d;
        }
        return e;
    };

    const std::vector<size_t> order = placement_order(g, seed);
    std::vector<bool> in_val(g.groups.size(), false);
    size_t val_groups = 0;
    for (size_t gi : order) {
        const Group& group = g.groups[gi];
        // A group goes to validation when that brings every stratum's count closer to its target.
        if (error_with(group, true) < error_with(group, false)) {
            in_val[gi] = true;
            ++val_groups;
            for (size_t s = 0; s < strata; ++s) val_counts[s] += double(group.counts[s]);
        }
    }
    // Both sides must hold someone: move the smallest group placed last across when one is empty.
    if (val_groups == 0) in_val[order.back()] = true;
    if (val_groups == g.groups.size()) in_val[order.back()] = false;

    Split split;
    std::vector<int> side(dataset.items.size(), 0);
    for (size_t gi = 0; gi < g.groups.size(); ++gi) {
        for (size_t i : g.groups[gi].items) side[i] = in_val[gi] ? 1 : 0;
    }
    for (size_t i = 0; i < side.size(); ++i) (side[i] ? split.val : split.train).push_back(i);
    return split;
}

Split fold_split(const std::vector<int>& folds, int k) {
    const int max_fold = folds.empty() ? -1 : *std::max_element(folds.begin(), folds.end());
    if (k < 0 || k > max_fold) {
        throw UsageError("fold " + std::to_string(k) + " does not exist (folds 0.." + std::to_string(max_fold) + ")");
    }
    Split split;
    for (size_t i = 0; i < folds.size(); ++i) (folds[i] == k ? split.val : split.train).push_back(i);
    return split;
}

namespace {

void write_rows(const std::filesystem::path& file, const Dataset& dataset, const std::string& last_column,
                const std::vector<std::string>& values) {
    std::string out = "path,id,patient," + last_column + "\n";
    for (size_t i = 0; i < dataset.items.size(); ++i) {
        if (values[i].empty()) continue;
        const DatasetItem& item = dataset.items[i];
        out += csv_escape(data_detail::relative_path(item.path, dataset.root)) + "," + csv_escape(item.id) + "," +
               csv_escape(item.patient) + "," + values[i] + "\n";
    }
    write_file_atomic(file, out);
}

}  // namespace

void write_split_csv(const std::filesystem::path& file, const Dataset& dataset, const std::vector<int>& folds) {
    if (folds.size() != dataset.items.size()) {
        throw UsageError("write_split_csv: " + std::to_string(folds.size()) + " folds for " +
                         std::to_string(dataset.items.size()) + " items");
    }
    std::vector<std::string> values(folds.size());
    for (size_t i = 0; i < folds.size(); ++i) values[i] = std::to_string(folds[i]);
    write_rows(file, dataset, "fold", values);
}

void write_split_csv(const std::filesystem::path& file, const Dataset& dataset, const Split& split) {
    std::vector<std::string> values(dataset.items.size());
    auto mark = [&](const std::vector<size_t>& indices, const char* name) {
        for (size_t i : indices) {
            if (i >= values.size()) {
                throw UsageError("write_split_csv: item index " + std::to_string(i) + " out of range");
            }
            values[i] = name;
        }
    };
    mark(split.train, "train");
    mark(split.val, "val");
    write_rows(file, dataset, "set", values);
}

}  // namespace hemoscan

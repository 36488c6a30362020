#pragma once
// Helpers shared by the data sources: seeded shuffling (std::shuffle's draws are implementation
// defined; this one gives the same order on every platform for a seed) and item paths relative to
// the data folder.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <random>
#include <utility>
#include <vector>

#include "hemoscan/data/dataset.hpp"
#include "hemoscan/util/random.hpp"

namespace hemoscan::data_detail {

using hemoscan::splitmix64;

// Fisher-Yates with mt19937_64 (fully specified by the standard).
template <typename T>
void seeded_shuffle(std::vector<T>& v, std::uint64_t seed) {
    std::mt19937_64 rng(splitmix64(seed));
    for (size_t i = v.size(); i > 1; --i) {
        const size_t j = static_cast<size_t>(rng() % i);
        std::swap(v[i - 1], v[j]);
    }
}

// `path` relative to `root` ("img/a.png"), or `path` itself when it lies outside root.
inline std::string relative_path(const std::filesystem::path& path, std::filesystem::path root) {
    if (!root.has_filename() && root.has_parent_path()) root = root.parent_path();  // "data/" -> "data"
    std::filesystem::path rel = path.lexically_normal().lexically_relative(root.lexically_normal());
    if (rel.empty() || *rel.begin() == "..") rel = path;
    return rel.generic_string();
}

// Ordered data sets: ranks the items of each study (DatasetItem::study) by `keys` (a manifest's
// `slice`, a position along the slice normal) into DatasetItem::slice and sets Dataset::ordered.
// Equal keys in one study: InputError naming both items (`where`) when `strict`, else kept in file
// order with a warning.
void order_slices(Dataset& ds, const std::vector<double>& keys, bool strict,
                  const std::function<std::string(size_t)>& where);

// The RSNA 2019 layout (dataset.hpp form (d)): the CSV of the folder whose header is `ID,Label`.
std::optional<std::filesystem::path> find_rsna_csv(const std::filesystem::path& root);
Dataset open_rsna(const std::filesystem::path& root, const std::filesystem::path& csv, const DatasetOptions& options);

}  // namespace hemoscan::data_detail

#pragma once
// Option parsing shared by several subcommands.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>


namespace hemoscan::cli {

// "a,b" -> {"a", "b"} (trimmed, empty items dropped).
std::vector<std::string> parse_list(const std::string& csv);

// Prints metrics.json's per-label table: AUC with CI, accuracy, sensitivity, specificity and the
// threshold ("per fold" where each fold had its own, as in cv).
void print_label_table(const nlohmann::json& metrics);

}  // namespace hemoscan::cli

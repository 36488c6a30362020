#pragma once
// Option parsing shared by several subcommands.
#include <string>
#include <vector>


namespace hemoscan::cli {

// "a,b" -> {"a", "b"} (trimmed, empty items dropped).
std::vector<std::string> parse_list(const std::string& csv);

}  // namespace hemoscan::cli

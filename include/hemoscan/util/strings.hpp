#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace hemoscan {

std::string trim(std::string_view s);
std::string to_lower(std::string_view s);
std::vector<std::string> split(std::string_view s, char sep);
bool ends_with(std::string_view s, std::string_view suffix);

}  // namespace hemoscan

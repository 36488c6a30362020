#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace hemoscan {

std::string trim(std::string_view s);
std::string to_lower(std::string_view s);
std::vector<std::string> split(std::string_view s, char sep);
bool ends_with(std::string_view s, std::string_view suffix);
// A file-name-safe form: letters, digits, '-' and '.' kept, anything else '_'; trailing '_'/'.'
// dropped; at most `max_length` characters; never empty ("item").
std::string safe_filename(std::string_view s, size_t max_length = 64);

}  // namespace hemoscan

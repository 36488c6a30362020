#pragma once
#include <functional>
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

// The library names options by their field in backticks (e.g. "`val_fraction` must be in (0, 1)") and
// never by a command-line flag; a front end rewrites each `field` with `name(field)` (the CLI: its flag).
std::string render_fields(std::string_view message, const std::function<std::string(const std::string&)>& name);

}  // namespace hemoscan

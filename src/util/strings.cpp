#include "hemoscan/util/strings.hpp"

#include <algorithm>
#include <cctype>

namespace hemoscan {

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}

std::string to_lower(std::string_view s) {
    std::string r(s);
    std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return r;
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t pos = s.find(sep, start);
        out.emplace_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
        if (pos == std::string_view::npos) break;
        start = pos + 1;
    }
    return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string safe_filename(std::string_view s, size_t max_length) {
    std::string r;
    for (char c : s) r += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
    while (!r.empty() && (r.back() == '_' || r.back() == '.')) r.pop_back();
    if (r.size() > max_length) r.resize(max_length);
    return r.empty() ? "item" : r;
}

std::string render_fields(std::string_view message, const std::function<std::string(const std::string&)>& name) {
    std::string out;
    size_t i = 0;
    while (i < message.size()) {
        const size_t open = message.find('`', i);
        const size_t close = open == std::string_view::npos ? open : message.find('`', open + 1);
        if (close == std::string_view::npos) break;
        const std::string field(message.substr(open + 1, close - open - 1));
        const bool is_field = !field.empty() && field.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos;
        out.append(message.substr(i, open - i));
        out += is_field ? name(field) : "`" + field + "`";
        i = close + 1;
    }
    out.append(message.substr(std::min(i, message.size())));
    return out;
}

}  // namespace hemoscan

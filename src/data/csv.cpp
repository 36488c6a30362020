#include "hemoscan/data/csv.hpp"

#include <unordered_map>

#include "hemoscan/error.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

int CsvTable::column(const std::string& name) const {
    const std::string wanted = to_lower(trim(name));
    for (size_t i = 0; i < header.size(); ++i) {
        if (to_lower(header[i]) == wanted) return static_cast<int>(i);
    }
    return -1;
}

namespace {

struct RawRow {
    std::vector<std::string> cells;
    int line = 0;  // line the row starts on
};

std::string where(const std::filesystem::path& path, int line) {
    return path.string() + ":" + std::to_string(line);
}

// Splits the text into rows of cells. Quoted fields may hold commas, "" and line breaks; a line
// break is \n, \r\n or a lone \r. Cells are trimmed; blank lines are skipped.
std::vector<RawRow> parse(const std::filesystem::path& path, std::string_view text) {
    std::vector<RawRow> rows;
    RawRow row;
    std::string cell;
    bool quoted = false;       // inside a quoted section
    bool any_content = false;  // the current row has a non-blank character or a quote
    int line = 1, quote_line = 0;
    row.line = 1;

    auto end_cell = [&] {
        row.cells.push_back(trim(cell));
        cell.clear();
    };
    auto end_row = [&] {
        end_cell();
        if (any_content) rows.push_back(std::move(row));
        row = RawRow{};
        any_content = false;
    };

    for (size_t i = 0; i < text.size(); ++i) {
        const char ch = text[i];
        if (quoted) {
            if (ch == '"') {
                if (i + 1 < text.size() && text[i + 1] == '"') {
                    cell += '"';
                    ++i;
                } else {
                    quoted = false;
                }
            } else {
                if (ch == '\n' || (ch == '\r' && !(i + 1 < text.size() && text[i + 1] == '\n'))) ++line;
                cell += ch;
            }
            continue;
        }
        switch (ch) {
        case '"':
            quoted = true;
            quote_line = line;
            any_content = true;
            break;
        case ',':
            any_content = true;
            end_cell();
            break;
        case '\r':
            if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
            [[fallthrough]];
        case '\n':
            end_row();
            ++line;
            row.line = line;
            break;
        default:
            if (ch != ' ' && ch != '\t') any_content = true;
            cell += ch;
        }
    }
    if (quoted) throw InputError(where(path, quote_line) + ": unterminated quoted field");
    end_row();
    return rows;
}

}  // namespace

CsvTable read_csv(const std::filesystem::path& path) {
    std::string text = read_file(path);
    std::string_view view(text);
    if (view.substr(0, 3) == "\xEF\xBB\xBF") view.remove_prefix(3);  // UTF-8 byte order mark

    std::vector<RawRow> raw = parse(path, view);
    if (raw.empty()) throw InputError(path.string() + ": empty");

    CsvTable table;
    table.path = path;
    table.header = std::move(raw.front().cells);
    std::unordered_map<std::string, int> seen;
    for (size_t i = 0; i < table.header.size(); ++i) {
        const std::string& name = table.header[i];
        if (name.empty()) {
            throw InputError(where(path, raw.front().line) + ": column " + std::to_string(i + 1) +
                             " has no name");
        }
        auto [it, inserted] = seen.emplace(to_lower(name), static_cast<int>(i));
        if (!inserted) throw InputError(where(path, raw.front().line) + ": duplicate column '" + name + "'");
    }
    for (size_t r = 1; r < raw.size(); ++r) {
        if (raw[r].cells.size() != table.header.size()) {
            throw InputError(where(path, raw[r].line) + ": expected " + std::to_string(table.header.size()) +
                             " cells (as in the header), found " + std::to_string(raw[r].cells.size()));
        }
        table.rows.push_back(std::move(raw[r].cells));
        table.line_numbers.push_back(raw[r].line);
    }
    return table;
}

std::string csv_escape(const std::string& cell) {
    if (cell.find_first_of(",\"\n\r") == std::string::npos) return cell;
    std::string out = "\"";
    for (char ch : cell) {
        if (ch == '"') out += '"';
        out += ch;
    }
    out += '"';
    return out;
}

}  // namespace hemoscan

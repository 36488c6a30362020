#pragma once
// A small RFC 4180 CSV reader (quoted fields, "" escapes, CRLF, BOM) that keeps line numbers for
// error messages, and a writer that quotes where needed.
#include <filesystem>
#include <string>
#include <vector>

namespace hemoscan {

struct CsvTable {
    std::filesystem::path path;
    std::vector<std::string> header;             // trimmed column names
    std::vector<std::vector<std::string>> rows;  // trimmed cells, one vector per data row
    std::vector<int> line_numbers;               // 1-based line of each row in the file

    // Index of a column by (case-insensitive) name, or -1.
    int column(const std::string& name) const;
};

// Reads a CSV file with a header row. Throws InputError "<file>:<line>: ..." for unbalanced quotes
// or rows whose cell count differs from the header's; "<file>: empty" for an empty file.
CsvTable read_csv(const std::filesystem::path& path);

// Quotes a cell if it holds a comma, quote or newline.
std::string csv_escape(const std::string& cell);

}  // namespace hemoscan

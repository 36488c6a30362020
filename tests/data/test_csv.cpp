#include <gtest/gtest.h>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "support/test_util.hpp"

namespace hemoscan {
namespace {

using test::TempDir;
using test::write_text;

// Runs `fn`, expecting an InputError whose message contains every piece of `parts`.
TEST(Csv, PlainTableWithLineNumbers) {
    TempDir dir;
    write_text(dir / "a.csv", "path,label\nx.png,1\ny.png,0\n");
    const CsvTable t = read_csv(dir / "a.csv");
    EXPECT_EQ(t.path, dir / "a.csv");
    ASSERT_EQ(t.header, (std::vector<std::string>{"path", "label"}));
    ASSERT_EQ(t.rows.size(), 2u);
    EXPECT_EQ(t.rows[0], (std::vector<std::string>{"x.png", "1"}));
    EXPECT_EQ(t.rows[1], (std::vector<std::string>{"y.png", "0"}));
    EXPECT_EQ(t.line_numbers, (std::vector<int>{2, 3}));
    EXPECT_EQ(t.column("LABEL"), 1);
    EXPECT_EQ(t.column("path"), 0);
    EXPECT_EQ(t.column("missing"), -1);
}

TEST(Csv, QuotesEscapesAndEmbeddedNewlines) {
    TempDir dir;
    write_text(dir / "q.csv",
               "name,note\n"
               "\"a,b\",\"say \"\"hi\"\"\"\n"
               "\"two\nlines\",x\n"
               "plain,\"\"\n");
    const CsvTable t = read_csv(dir / "q.csv");
    ASSERT_EQ(t.rows.size(), 3u);
    EXPECT_EQ(t.rows[0][0], "a,b");
    EXPECT_EQ(t.rows[0][1], "say \"hi\"");
    EXPECT_EQ(t.rows[1][0], "two\nlines");
    EXPECT_EQ(t.rows[1][1], "x");
    EXPECT_EQ(t.rows[2][1], "");
    // The row after the two-line cell starts on line 5.
    EXPECT_EQ(t.line_numbers, (std::vector<int>{2, 3, 5}));
}

TEST(Csv, CrlfBomAndSpacesInHeader) {
    TempDir dir;
    // The real head_ct labels.csv has "id, hemorrhage" (a space after the comma).
    write_text(dir / "labels.csv", "\xEF\xBB\xBFid, hemorrhage \r\n000, 1\r\n001,0\r\n\r\n");
    const CsvTable t = read_csv(dir / "labels.csv");
    ASSERT_EQ(t.header, (std::vector<std::string>{"id", "hemorrhage"}));
    EXPECT_EQ(t.column("id"), 0);  // the BOM is not part of the first name
    EXPECT_EQ(t.column("hemorrhage"), 1);
    ASSERT_EQ(t.rows.size(), 2u);
    EXPECT_EQ(t.rows[0], (std::vector<std::string>{"000", "1"}));  // ids stay strings: leading zeros kept
    EXPECT_EQ(t.rows[1], (std::vector<std::string>{"001", "0"}));
    EXPECT_EQ(t.line_numbers, (std::vector<int>{2, 3}));
}

TEST(Csv, BlankLinesAreSkippedButCounted) {
    TempDir dir;
    write_text(dir / "b.csv", "a,b\n\n1,2\n   \n3,4");  // no newline at the end either
    const CsvTable t = read_csv(dir / "b.csv");
    ASSERT_EQ(t.rows.size(), 2u);
    EXPECT_EQ(t.line_numbers, (std::vector<int>{3, 5}));
    EXPECT_EQ(t.rows[1], (std::vector<std::string>{"3", "4"}));
}

TEST(Csv, WrongCellCountNamesFileAndLine) {
    TempDir dir;
    const auto file = dir / "bad.csv";
    write_text(file, "a,b\n1,2\n1,2,3\n");
    test::expect_input_error([&] { read_csv(file); }, {file.string() + ":3:", "expected 2", "found 3"});
    write_text(file, "a,b\n1,2\r\n\r\nonly\r\n");
    test::expect_input_error([&] { read_csv(file); }, {file.string() + ":4:"});
}

TEST(Csv, UnterminatedQuoteNamesItsLine) {
    TempDir dir;
    const auto file = dir / "bad.csv";
    write_text(file, "a,b\n1,2\n\"open,3\n4,5\n");
    test::expect_input_error([&] { read_csv(file); }, {file.string() + ":3:", "unterminated"});
}

TEST(Csv, EmptyAndMissingFiles) {
    TempDir dir;
    write_text(dir / "empty.csv", "");
    test::expect_input_error([&] { read_csv(dir / "empty.csv"); }, {(dir / "empty.csv").string(), "empty"});
    write_text(dir / "bom.csv", "\xEF\xBB\xBF\r\n");
    test::expect_input_error([&] { read_csv(dir / "bom.csv"); }, {(dir / "bom.csv").string(), "empty"});
    test::expect_input_error([&] { read_csv(dir / "nope.csv"); }, {(dir / "nope.csv").string()});
}

TEST(Csv, DuplicateOrEmptyColumnNames) {
    TempDir dir;
    write_text(dir / "d.csv", "a,A\n1,2\n");
    test::expect_input_error([&] { read_csv(dir / "d.csv"); }, {(dir / "d.csv").string() + ":1:", "duplicate"});
    write_text(dir / "e.csv", "a,,b\n1,2,3\n");
    test::expect_input_error([&] { read_csv(dir / "e.csv"); }, {(dir / "e.csv").string() + ":1:", "no name"});
}

TEST(Csv, EscapeRoundTrip) {
    EXPECT_EQ(csv_escape("plain"), "plain");
    EXPECT_EQ(csv_escape("a,b"), "\"a,b\"");
    EXPECT_EQ(csv_escape("say \"hi\""), "\"say \"\"hi\"\"\"");
    EXPECT_EQ(csv_escape("two\nlines"), "\"two\nlines\"");
    TempDir dir;
    const std::vector<std::string> cells{"a,b", "say \"hi\"", "two\nlines"};
    write_text(dir / "r.csv", "x,y,z\n" + csv_escape(cells[0]) + "," + csv_escape(cells[1]) + "," +
                                  csv_escape(cells[2]) + "\n");
    const CsvTable t = read_csv(dir / "r.csv");
    ASSERT_EQ(t.rows.size(), 1u);
    EXPECT_EQ(t.rows[0], cells);
}

}  // namespace
}  // namespace hemoscan

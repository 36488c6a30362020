// What a file is by its bytes, and reading the entries of zip archives (io/archive.hpp).
#include <gtest/gtest.h>

#include <random>

#include "hemoscan/error.hpp"
#include "hemoscan/io/archive.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"
#include "support/zip_writer.hpp"

using namespace hemoscan;
using test::TempDir;

TEST(Archive, SniffsByContent) {
    EXPECT_EQ(sniff_file_type(std::string("\x89PNG\r\n\x1a\n....", 12), "x.bin"), FileType::Png);
    EXPECT_EQ(sniff_file_type(std::string("\xff\xd8\xff\xe0", 4), "x.png"), FileType::Jpeg);  // content wins
    EXPECT_EQ(sniff_file_type(std::string("PK\x03\x04rest", 8), "a.dcm"), FileType::Zip);
    std::string dicm(140, '\0');
    dicm.replace(128, 4, "DICM");
    EXPECT_EQ(sniff_file_type(dicm, "IM0001"), FileType::Dicom);
    // A broken file named *.dcm or sent as DICOM is DICOM (reported as a broken DICOM, not unknown).
    EXPECT_EQ(sniff_file_type("garbage!!", "IM1.DCM"), FileType::Dicom);
    EXPECT_EQ(sniff_file_type("garbage!!", "x", "application/dicom"), FileType::Dicom);
    EXPECT_EQ(sniff_file_type("garbage!!", "notes.txt"), FileType::Unknown);
    EXPECT_EQ(sniff_file_type("", "notes.txt"), FileType::Unknown);
}

TEST(Archive, ReadsFileEntriesAndPassesOverTheRest) {
    TempDir d;
    test::write_zip(d / "a.zip", {{"series/", ""},
                                  {"series/IM1.dcm", "one"},
                                  {"series\\IM2.dcm", "two"},
                                  {"__MACOSX/series/._IM1.dcm", "fork"},
                                  {"series/.DS_Store", "junk"},
                                  {"DICOMDIR", "index"},
                                  {"readme.txt", "text"}});
    std::vector<std::pair<std::string, std::string>> seen;
    const size_t bytes = for_each_zip_entry(read_file(d / "a.zip"), "a.zip", ZipLimits{},
                                            [&](const std::string& n, const std::string& b) { seen.emplace_back(n, b); });
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[0], (std::pair<std::string, std::string>{"series/IM1.dcm", "one"}));
    EXPECT_EQ(seen[1].first, "series\\IM2.dcm");
    EXPECT_EQ(seen[2].first, "readme.txt");
    EXPECT_EQ(bytes, 3u + 3u + 4u);
}

TEST(Archive, LimitsAndBrokenArchives) {
    TempDir d;
    test::write_zip(d / "many.zip", {{"a.dcm", "1"}, {"b.dcm", "2"}, {"c.dcm", "3"}});
    const std::string many = read_file(d / "many.zip");
    auto nothing = [](const std::string&, const std::string&) {};
    ZipLimits two;
    two.max_entries = 2;
    EXPECT_THROW(for_each_zip_entry(many, "many.zip", two, nothing), ZipLimitError);
    // The uncompressed size is counted while reading: a small archive that expands past the limit.
    test::write_zip(d / "bomb.zip", {{"a.dcm", std::string(3 << 20, '\0')}});
    const std::string bomb = read_file(d / "bomb.zip");
    ASSERT_LT(bomb.size(), size_t(1) << 20);
    ZipLimits small;
    small.max_unzipped_bytes = size_t(1) << 20;
    try {
        for_each_zip_entry(bomb, "bomb.zip", small, nothing);
        ADD_FAILURE() << "no ZipLimitError";
    } catch (const ZipLimitError& e) {
        EXPECT_NE(std::string(e.what()).find("bomb.zip"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("1 MB"), std::string::npos) << e.what();
    }
    // The ratio (issue 28): 3 MB of zeros deflate about a thousandfold; with the ratio checked from the first
    // megabyte, the archive is refused as a bomb long before the size limit.
    ZipLimits ratio;
    ratio.ratio_after = size_t(1) << 20;
    try {
        for_each_zip_entry(bomb, "bomb.zip", ratio, nothing);
        ADD_FAILURE() << "no ZipLimitError";
    } catch (const ZipLimitError& e) {
        EXPECT_NE(std::string(e.what()).find("expands more than 200-fold"), std::string::npos) << e.what();
    }
    // Real content under the ratio passes: noise does not deflate.
    std::string noise(3 << 20, '\0');
    std::mt19937 rng(1);
    for (auto& c : noise) c = static_cast<char>(rng());
    test::write_zip(d / "noise.zip", {{"a.dcm", noise}});
    EXPECT_EQ(for_each_zip_entry(read_file(d / "noise.zip"), "noise.zip", ratio, nothing), noise.size());
    test::expect_input_error(
        [&] { for_each_zip_entry(std::string("PK\x03\x04", 4) + std::string(100, 'z'), "bad.zip", {}, nothing); },
        {"bad.zip", "not a valid zip"});
}

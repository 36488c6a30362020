#include <gtest/gtest.h>

#include "hemoscan/error.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

TEST(Fs, AtomicWriteLeavesNoTempOnFailure) {
    test::TempDir dir;
    auto target = dir / "out.txt";
    EXPECT_THROW(write_atomic_with(target,
                                   [](const fs::path& tmp) {
                                       test::write_text(tmp, "partial");
                                       throw Error("boom");
                                   }),
                 Error);
    EXPECT_FALSE(fs::exists(target));
    EXPECT_TRUE(fs::is_empty(dir.path()));
    write_file_atomic(target, "whole");
    EXPECT_EQ(read_file(target), "whole");
}

TEST(Fs, ReadMissingFileNamesIt) {
    try {
        read_file("/nonexistent/file.bin");
        FAIL();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/file.bin"), std::string::npos);
    }
}

TEST(Strings, TrimSplitLower) {
    EXPECT_EQ(trim("  a b \t"), "a b");
    EXPECT_EQ(to_lower("HeMo"), "hemo");
    EXPECT_EQ(split("a,,b", ','), (std::vector<std::string>{"a", "", "b"}));
    EXPECT_TRUE(ends_with("x.png", ".png"));
}

#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "hemoscan/util/runtime.hpp"

using namespace hemoscan;

// Every hemoscan executable links jemalloc with memory kept (cmake/malloc_conf.cpp); this test
// binary is built the same way, so a broken link or a changed malloc_conf fails here.
TEST(Runtime, JemallocKeepsMemory) {
    if (std::getenv("MALLOC_CONF")) GTEST_SKIP() << "MALLOC_CONF overrides the built-in settings";
    std::vector<char> touch(1 << 20, 1);  // make sure the allocator is initialised
    auto info = allocator_info();
    EXPECT_EQ(info.name.rfind("jemalloc", 0), 0u) << info.name;
    EXPECT_EQ(info.dirty_decay_ms, -1);
    EXPECT_EQ(info.muzzy_decay_ms, -1);
    EXPECT_TRUE(info.retain);
    // Huge allocations share the arenas whose pages are kept (no separate, never-purged huge arena).
    EXPECT_EQ(info.oversize_threshold, 0);
    // Free extents are reused for any smaller request, so they cannot grow into one that nothing fits.
    EXPECT_EQ(info.lg_extent_max_active_fit, 32);
    EXPECT_EQ(touch[12345], 1);
}

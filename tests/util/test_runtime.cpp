#include <gtest/gtest.h>

#include <cstddef>
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

// A free extent must serve requests far smaller than itself. With jemalloc's default cap (64x) a
// request beside a larger free extent took fresh pages, and in a 1,600-study training the free extent
// kept growing by the freed activations beside it (~1 GB a minute, docs/notebook/results-log-2026-11.md).
TEST(Runtime, JemallocReusesLargeFreeExtents) {
    if (std::getenv("MALLOC_CONF")) GTEST_SKIP() << "MALLOC_CONF overrides the built-in settings";
    if (allocator_info().name.rfind("jemalloc", 0) != 0) GTEST_SKIP() << "not jemalloc";
    const size_t big = size_t{600} << 20, small = size_t{8} << 20;  // never touched: no resident memory
    void* volatile p = std::malloc(big);  // volatile: the compiler may not elide the pair
    ASSERT_NE(p, nullptr);
    std::free(p);
    const long long before = allocator_dirty_bytes();
    ASSERT_GE(before, static_cast<long long>(big)) << "the freed 600 MB are not kept as dirty pages";
    void* volatile q = std::malloc(small);
    ASSERT_NE(q, nullptr);
    const long long after = allocator_dirty_bytes();
    std::free(q);
    // Served from free pages, the dirty bytes shrink by the request; from fresh pages they stay.
    EXPECT_LE(after, before - static_cast<long long>(small)) << "an 8 MB request took fresh pages beside "
                                                             << before / (1 << 20) << " MB of free ones";
}

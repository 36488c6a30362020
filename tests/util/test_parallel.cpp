// parallel_for_index: every job once, results at their index, errors after all jobs, lowest index first.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "hemoscan/util/parallel.hpp"

using namespace hemoscan;

TEST(Parallel, EveryIndexOnceResultsInPlace) {
    for (int workers : {0, 1, 2, 3, 64}) {
        std::vector<int> out(101, -1);
        std::vector<std::atomic<int>> calls(101);
        parallel_for_index(out.size(), workers, [&](size_t i) {
            out[i] = static_cast<int>(i * i);
            ++calls[i];
        });
        for (size_t i = 0; i < out.size(); ++i) {
            EXPECT_EQ(out[i], static_cast<int>(i * i)) << i;
            EXPECT_EQ(calls[i].load(), 1) << i;
        }
    }
    bool called = false;
    parallel_for_index(0, 2, [&](size_t) { called = true; });
    EXPECT_FALSE(called);
}

TEST(Parallel, RunsEveryJobThenRethrowsTheLowestFailure) {
    std::atomic<int> ran{0};
    try {
        parallel_for_index(20, 2, [&](size_t i) {
            ++ran;
            if (i == 13) throw std::runtime_error("job 13");
            if (i == 7) throw std::runtime_error("job 7");
        });
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "job 7");
    }
    EXPECT_EQ(ran.load(), 20);
}

TEST(Parallel, UsesSeveralThreads) {
    // Two jobs that each wait for the other to start can only finish on two threads (asked for
    // explicitly: the count does not depend on the cores).
    std::atomic<int> started{0};
    parallel_for_index(2, 2, [&](size_t) {
        ++started;
        while (started.load() < 2) std::this_thread::yield();
    });
    EXPECT_EQ(started.load(), 2);
}

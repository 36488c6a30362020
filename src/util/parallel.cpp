#include "hemoscan/util/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>
#include <vector>

namespace hemoscan {

void parallel_for_index(size_t n, int workers, const std::function<void(size_t)>& job) {
    if (n == 0) return;
    std::vector<std::exception_ptr> errors(n);
    std::atomic<size_t> next{0};
    auto work = [&] {
        for (size_t i = next++; i < n; i = next++) {
            try {
                job(i);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
    };
    const size_t cores = std::max(1u, std::thread::hardware_concurrency());
    const size_t count = std::min(n, workers > 0 ? static_cast<size_t>(workers) : cores);
    std::vector<std::thread> pool;
    for (size_t t = 1; t < count; ++t) pool.emplace_back(work);
    work();  // the calling thread is one of the workers
    for (auto& t : pool) t.join();
    for (const auto& e : errors) {
        if (e) std::rethrow_exception(e);
    }
}

}  // namespace hemoscan

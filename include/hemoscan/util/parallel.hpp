#pragma once
// One way to run independent jobs 0..n-1 on a few threads (the caller's thread included). Results
// are meant to land at their index, so the outcome does not depend on timing.
#include <cstddef>
#include <functional>

namespace hemoscan {

// Calls job(i) for every i in [0, n) on min(n, workers) threads (workers <= 0: all cores). Every job
// runs even when some throw; afterwards the exception of the lowest failing index is rethrown.
void parallel_for_index(size_t n, int workers, const std::function<void(size_t)>& job);

}  // namespace hemoscan

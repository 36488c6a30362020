#pragma once
// What the process runs on: allocator and BLAS, for run configs, `hemoscan info` and tests. Both
// are looked up at run time (dlsym), so the library does not link them itself.
#include <nlohmann/json.hpp>
#include <string>

namespace hemoscan {

struct AllocatorInfo {
    std::string name = "system";  // "jemalloc <version>" when jemalloc is the malloc of the process
    long dirty_decay_ms = 0, muzzy_decay_ms = 0;
    bool retain = false;
    long long oversize_threshold = -1;  // bytes; 0 = no separate arena for huge allocations; -1 = unknown
    int lg_extent_max_active_fit = -1;  // a free extent is reused for requests down to 1/2^this of its size
};
AllocatorInfo allocator_info();
// Bytes freed but kept by jemalloc (dirty pages) in the calling thread's arena; -1 when not jemalloc.
long long allocator_dirty_bytes();
// For a long-running process (the server): freed pages go back to the OS after `decay_ms` (every
// existing arena and new ones, dirty and muzzy), purged by jemalloc's background thread even while
// idle, instead of the training setting that keeps them for good (cmake/malloc_conf.cpp). False when
// the allocator is not jemalloc or refuses.
bool return_freed_memory(long decay_ms);

struct BlasInfo {
    std::string name = "unknown";  // "OpenBLAS <config>" when OpenBLAS is loaded
    int threads = 0;
};
BlasInfo blas_info();

nlohmann::json runtime_json();

}  // namespace hemoscan

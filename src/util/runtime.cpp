#include "hemoscan/util/runtime.hpp"

#include <dlfcn.h>

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "hemoscan/version.hpp"

namespace hemoscan {

namespace {
using MallctlFn = int (*)(const char*, void*, size_t*, void*, size_t);

template <typename T>
bool read_ctl(MallctlFn fn, const char* name, T& out) {
    size_t size = sizeof(T);
    return fn(name, &out, &size, nullptr, 0) == 0;
}
}  // namespace

AllocatorInfo allocator_info() {
    AllocatorInfo info;
    auto fn = reinterpret_cast<MallctlFn>(::dlsym(RTLD_DEFAULT, "mallctl"));
    if (!fn) return info;
    const char* version = nullptr;
    if (read_ctl(fn, "version", version) && version) info.name = std::string("jemalloc ") + version;
    ssize_t v = 0;
    if (read_ctl(fn, "opt.dirty_decay_ms", v)) info.dirty_decay_ms = static_cast<long>(v);
    if (read_ctl(fn, "opt.muzzy_decay_ms", v)) info.muzzy_decay_ms = static_cast<long>(v);
    bool retain = false;
    if (read_ctl(fn, "opt.retain", retain)) info.retain = retain;
    size_t oversize = 0;
    if (read_ctl(fn, "opt.oversize_threshold", oversize)) info.oversize_threshold = static_cast<long long>(oversize);
    size_t max_fit = 0;
    if (read_ctl(fn, "opt.lg_extent_max_active_fit", max_fit)) {
        info.lg_extent_max_active_fit = static_cast<int>(max_fit);
    }
    return info;
}

long long allocator_dirty_bytes() {
    auto fn = reinterpret_cast<MallctlFn>(::dlsym(RTLD_DEFAULT, "mallctl"));
    if (!fn) return -1;
    std::uint64_t epoch = 1;
    size_t size = sizeof epoch;
    fn("epoch", &epoch, &size, &epoch, size);  // jemalloc's statistics are snapshots: refresh them
    unsigned arena = 0;
    size_t pdirty = 0;
    if (!read_ctl(fn, "thread.arena", arena)) return -1;
    const std::string name = "stats.arenas." + std::to_string(arena) + ".pdirty";
    if (!read_ctl(fn, name.c_str(), pdirty)) return -1;
    return static_cast<long long>(pdirty) * ::sysconf(_SC_PAGESIZE);
}

bool return_freed_memory(long decay_ms) {
    auto fn = reinterpret_cast<MallctlFn>(::dlsym(RTLD_DEFAULT, "mallctl"));
    if (!fn) return false;
    ssize_t decay = decay_ms;
    bool ok = true;
    auto write = [&](const std::string& name, auto value) {
        ok = fn(name.c_str(), nullptr, nullptr, &value, sizeof value) == 0 && ok;
    };
    write("arenas.dirty_decay_ms", decay);  // arenas made from now on
    write("arenas.muzzy_decay_ms", decay);
    unsigned narenas = 0;
    if (!read_ctl(fn, "arenas.narenas", narenas)) return false;
    for (unsigned i = 0; i < narenas; ++i) {
        // Arenas not yet initialised refuse: they take the arenas.* defaults above when they start.
        const std::string arena = "arena." + std::to_string(i);
        fn((arena + ".dirty_decay_ms").c_str(), nullptr, nullptr, &decay, sizeof decay);
        fn((arena + ".muzzy_decay_ms").c_str(), nullptr, nullptr, &decay, sizeof decay);
    }
    write("background_thread", true);  // decay needs allocator activity otherwise: an idle server never purges
    return ok;
}

BlasInfo blas_info() {
    BlasInfo info;
    using ConfigFn = char* (*)();
    using ThreadsFn = int (*)();
    if (auto cfg = reinterpret_cast<ConfigFn>(::dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
        info.name = std::string("OpenBLAS ") + cfg();
        if (auto th = reinterpret_cast<ThreadsFn>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) {
            info.threads = th();
        }
    }
    return info;
}

nlohmann::json runtime_json() {
    auto a = allocator_info();
    auto b = blas_info();
    return {{"hemoscan", kVersion},
            {"allocator", {{"name", a.name}, {"dirty_decay_ms", a.dirty_decay_ms},
                           {"muzzy_decay_ms", a.muzzy_decay_ms}, {"retain", a.retain},
                           {"oversize_threshold", a.oversize_threshold},
                           {"lg_extent_max_active_fit", a.lg_extent_max_active_fit}}},
            {"blas", {{"name", b.name}, {"threads", b.threads}}}};
}

}  // namespace hemoscan

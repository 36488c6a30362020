// Shared parts of the fuzz harnesses (fuzz_support.hpp).
#include "fuzz_support.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <system_error>

#include "hemoscan/io/limits.hpp"
#include "hemoscan/log.hpp"

namespace hemoscan::fuzz {

namespace fs = std::filesystem;

namespace {

const char kPrefix[] = "hemoscan-fuzz-";

// Scratch folders of harness processes that are gone (killed, or ended by a crash report).
void remove_stale_scratch(const fs::path& tmp) {
    std::error_code ec;
    for (fs::directory_iterator it(tmp, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.rfind(kPrefix, 0) != 0) continue;
        const long pid = std::strtol(name.c_str() + sizeof(kPrefix) - 1, nullptr, 10);
        if (pid <= 0 || pid == ::getpid()) continue;
        if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
            std::error_code ignore;
            fs::remove_all(it->path(), ignore);
        }
    }
}

fs::path make_scratch() {
    const fs::path tmp = fs::temp_directory_path();
    remove_stale_scratch(tmp);
    std::string pattern = (tmp / (kPrefix + std::to_string(::getpid()) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
        std::perror("fuzz: mkdtemp");
        std::abort();
    }
    return pattern;
}

void remove_scratch() {
    std::error_code ignore;
    fs::remove_all(scratch_dir(), ignore);
}

}  // namespace

const fs::path& scratch_dir() {
    static const fs::path dir = make_scratch();
    // Registered once `dir` is complete, so that it runs before `dir` is destroyed.
    static const bool cleaned_at_exit = std::atexit(remove_scratch) == 0;
    (void)cleaned_at_exit;
    return dir;
}

bool verbose() {
    static const bool on = std::getenv("HEMOSCAN_FUZZ_VERBOSE") != nullptr;
    return on;
}

void init() {
    set_log_level("off");
    // A tenth of the defaults or less: the largest allocation a reader may make for an input within these
    // limits (a NIfTI of 8M float64 voxels: 64 MB, plus its float copies) is far under -malloc_limit_mb
    // (= -rss_limit_mb = 2048), so an allocation over it means a size that was not checked.
    ReadLimits limits;
    limits.max_pixels_per_slice = 1024 * 1024;
    limits.max_slices = 64;
    limits.max_voxels = 8 * 1024 * 1024;
    set_read_limits(limits);
    (void)scratch_dir();
}

fs::path write_input(const std::string& name, const std::uint8_t* data, size_t size) {
    const fs::path path = scratch_dir() / name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.close();
    if (!out) {
        std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
        std::abort();
    }
    return path;
}

}  // namespace hemoscan::fuzz

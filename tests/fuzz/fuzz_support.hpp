#pragma once
// What every fuzz harness shares (tests/fuzz/README.md): a scratch folder of its own process for the
// readers that need a path, read limits small enough that what a reader may legitimately allocate stays
// far below libFuzzer's -malloc_limit_mb, and the verdict on exceptions.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <typeinfo>

#include "hemoscan/error.hpp"

namespace hemoscan::fuzz {

// Once per process (LLVMFuzzerInitialize): the logger off (the readers warn about bad input, which is
// all a fuzzer sends), small read limits, the scratch folder.
void init();

// This process's scratch folder under $TMPDIR (hemoscan-fuzz-<pid>-XXXXXX): removed at exit, and by a
// later harness process if this one died (a crash report ends with _exit, not exit).
const std::filesystem::path& scratch_dir();

// Writes the input to scratch_dir()/name, replacing the previous input; returns the path.
std::filesystem::path write_input(const std::string& name, const std::uint8_t* data, size_t size);

// HEMOSCAN_FUZZ_VERBOSE=1 in the environment: print each InputError (to check what seeds reach).
bool verbose();

// Runs fn. InputError is the clean answer to a bad input; any other exception (std::bad_alloc, a
// UsageError, a std::out_of_range, ...) is a finding: named on stderr, then abort() so that libFuzzer
// saves the input.
template <typename F>
void expect_clean(const char* what, F&& fn) {
    try {
        fn();
        if (verbose()) std::fprintf(stderr, "fuzz: %s: ok\n", what);
    } catch (const InputError& e) {
        if (verbose()) std::fprintf(stderr, "fuzz: %s: InputError: %s\n", what, e.what());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz finding: %s threw %s: %s\n", what, typeid(e).name(), e.what());
        std::abort();
    }
}

}  // namespace hemoscan::fuzz

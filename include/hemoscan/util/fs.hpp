#pragma once
// File-system helpers. Every output is written to a temporary file next to its target and renamed
// into place, so a crash never leaves a half-written file behind.
#include <filesystem>
#include <functional>
#include <string>

namespace hemoscan {

namespace fs = std::filesystem;

// Writes `bytes` to `path` atomically (temp file + rename). Creates parent folders.
void write_file_atomic(const fs::path& path, const std::string& bytes);

// Calls `write(tmp)` with a temporary path in the target's folder (same extension, so that writers
// that pick a format by extension still work), then renames tmp onto `path`. On an exception the
// temporary file is removed and the exception propagates.
void write_atomic_with(const fs::path& path, const std::function<void(const fs::path& tmp)>& write);

// Reads a whole file; throws InputError naming the file when it cannot be read.
std::string read_file(const fs::path& path);

// SHA-256 of a file's bytes as 64 lowercase hex digits (OpenSSL). Error naming the file if unreadable.
std::string sha256_file(const fs::path& path);

}  // namespace hemoscan

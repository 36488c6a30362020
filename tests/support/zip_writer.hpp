#pragma once
// Writing zip archives for tests (libzip).
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace hemoscan::test {

// A zip written with libzip; entry names are used exactly as given (even "../x"). Fails the test
// (gtest ASSERT) when libzip refuses.
void write_zip(const std::filesystem::path& path, const std::vector<std::pair<std::string, std::string>>& entries);

}  // namespace hemoscan::test

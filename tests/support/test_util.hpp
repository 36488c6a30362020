#pragma once
// Helpers for tests: a temporary folder removed at the end, running the CLI binary.
#include <filesystem>
#include <functional>
#include <opencv2/core.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace hemoscan::test {

namespace fs = std::filesystem;

// A fresh folder under the system temp dir, removed (recursively) on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const fs::path& path() const { return path_; }
    fs::path operator/(const std::string& name) const { return path_ / name; }

private:
    fs::path path_;
};

struct CommandResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing its output.
CommandResult run_command(const std::string& command);

// Runs the hemoscan binary with the given argument string (already shell-quoted as needed).
CommandResult run_hemoscan(const std::string& args);

// A path quoted for the shell (single quotes; embedded quotes escaped).
std::string shell_quote(const fs::path& path);

// Parses a JSON file (throws on a missing or malformed file).
nlohmann::json read_json(const fs::path& path);

// Expects `fn` to throw hemoscan::InputError whose message contains every one of `parts`.
void expect_input_error(const std::function<void()>& fn, const std::vector<std::string>& parts);
// The same for hemoscan::UsageError (bad options).
void expect_usage_error(const std::function<void()>& fn, const std::vector<std::string>& parts);

// Two CSV files with the same rows and cells in the same order (`rows` of them, the header included);
// numeric cells after the header within `tol`, the others equal.
void expect_csv_near(const fs::path& a_file, const fs::path& b_file, size_t rows, double tol);

// Runs hemoscan `command` + `one` (quoted) as one process, then `command` + `two` + " --nproc-per-node 2"
// as a local group of two (`command` ends with the option the folder follows, e.g. "... --out "). A fatal
// failure when either exits non-zero or the group was not started: call it in ASSERT_NO_FATAL_FAILURE.
// `group_output`: the group's output (the launcher's and every rank's), when given.
void run_alone_and_as_group(const std::string& command, const fs::path& one, const fs::path& two,
                            std::string* group_output = nullptr);

// Expects `actual` to be CV_32FC1 and equal, pixel for pixel, to `expected` (any depth, converted).
void expect_mat_exact(const cv::Mat& actual, const cv::Mat& expected);

// Writes a text file (creating parent folders).
void write_text(const fs::path& path, const std::string& text);

// Debian's Python with torch and torchvision: the reference of the parity tests.
inline constexpr const char* kPython = "/usr/bin/python3";
inline constexpr double kPi = 3.14159265358979323846;
// A path quoted for the shell (short name for command lines in tests).
inline std::string q(const fs::path& p) { return shell_quote(p); }

}  // namespace hemoscan::test

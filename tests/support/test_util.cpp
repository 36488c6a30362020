#include "test_util.hpp"

#include <gtest/gtest.h>

#include "hemoscan/error.hpp"
#include "hemoscan/util/fs.hpp"

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

namespace hemoscan::test {

TempDir::TempDir() {
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
        fs::path p = fs::temp_directory_path() /
                     ("hemoscan_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
        if (fs::create_directory(p)) {
            path_ = p;
            return;
        }
    }
    throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

CommandResult run_command(const std::string& command) {
    CommandResult r;
    std::string full = command + " 2>&1";
    FILE* pipe = ::popen(full.c_str(), "r");
    if (!pipe) throw std::runtime_error("popen failed: " + command);
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
    int status = ::pclose(pipe);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

CommandResult run_hemoscan(const std::string& args) {
    return run_command(std::string("'") + HEMOSCAN_BIN + "' " + args);
}

std::string shell_quote(const fs::path& path) {
    std::string out = "'";
    for (char c : path.string()) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

nlohmann::json read_json(const fs::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    return nlohmann::json::parse(in);
}

namespace {

// Expects `fn` to throw Error whose message contains every one of `parts`.
template <class Error>
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts, const char* name) {
    try {
        fn();
        ADD_FAILURE() << "no " << name << " thrown";
    } catch (const Error& e) {
        const std::string msg = e.what();
        for (const std::string& part : parts) {
            EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
        }
    }
}

}  // namespace

void expect_input_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
    expect_error<hemoscan::InputError>(fn, parts, "InputError");
}

// The same rows and cells in the same order; numbers within `tol` (other batch sizes round floats otherwise).
void run_alone_and_as_group(const std::string& command, const fs::path& one, const fs::path& two,
                            std::string* group_output) {
    const CommandResult alone = run_hemoscan(command + shell_quote(one));
    ASSERT_EQ(alone.exit_code, 0) << alone.output;
    const CommandResult group = run_hemoscan(command + shell_quote(two) + " --nproc-per-node 2");
    if (group_output) *group_output = group.output;
    ASSERT_EQ(group.exit_code, 0) << group.output;
    ASSERT_NE(group.output.find("starting 2 processes"), std::string::npos) << group.output;
}

void expect_csv_near(const fs::path& a_file, const fs::path& b_file, size_t rows, double tol) {
    auto read_rows = [](const fs::path& csv) {
        std::vector<std::vector<std::string>> out;
        std::istringstream in(hemoscan::read_file(csv));
        for (std::string line; std::getline(in, line);) {
            std::vector<std::string> cells;
            std::istringstream cs(line);
            for (std::string c; std::getline(cs, c, ',');) cells.push_back(c);
            out.push_back(cells);
        }
        return out;
    };
    const auto a = read_rows(a_file), b = read_rows(b_file);
    ASSERT_EQ(a.size(), rows) << a_file;
    ASSERT_EQ(a.size(), b.size()) << b_file;
    for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].size(), b[i].size()) << b_file << " row " << i;
        for (size_t c = 0; c < a[i].size(); ++c) {
            char* end = nullptr;
            const double x = std::strtod(a[i][c].c_str(), &end);
            if (i > 0 && end && *end == '\0' && !a[i][c].empty()) {
                EXPECT_NEAR(x, std::strtod(b[i][c].c_str(), nullptr), tol) << b_file << " row " << i << " column " << c;
            } else {
                EXPECT_EQ(a[i][c], b[i][c]) << b_file << " row " << i << " column " << c;
            }
        }
    }
}

void expect_usage_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
    expect_error<hemoscan::UsageError>(fn, parts, "UsageError");
}

void expect_mat_exact(const cv::Mat& actual, const cv::Mat& expected) {
    ASSERT_EQ(actual.type(), CV_32FC1);
    ASSERT_EQ(actual.size(), expected.size());
    cv::Mat e;
    expected.convertTo(e, CV_32F);
    for (int r = 0; r < e.rows; ++r) {
        for (int c = 0; c < e.cols; ++c) {
            EXPECT_EQ(actual.at<float>(r, c), e.at<float>(r, c)) << "at row " << r << ", column " << c;
        }
    }
}

void write_text(const fs::path& path, const std::string& text) {
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary);
    out << text;
}

}  // namespace hemoscan::test

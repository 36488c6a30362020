#include "serve_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

extern char** environ;

namespace hemoscan::test {

namespace fs = std::filesystem;

int free_tcp_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

ServeProcess::ServeProcess(const fs::path& model, const fs::path& data_dir, const std::vector<std::string>& extra) {
    static int counter = 0;
    log_path_ = fs::temp_directory_path() /
                ("hemoscan_serve_" + std::to_string(::getpid()) + "_" + std::to_string(++counter) + ".log");
    std::vector<std::string> args = {HEMOSCAN_BIN,       "serve",     "--model", model.string(), "--data-dir",
                                     data_dir.string(), "--port",    "0",       "--compute-threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, HEMOSCAN_BIN, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        ADD_FAILURE() << "cannot start " << HEMOSCAN_BIN;
        return;
    }
    pid_ = pid;

    // The server logs its address once it is bound: "http://127.0.0.1:PORT/".
    const std::regex address(R"((https?)://127\.0\.0\.1:([0-9]+)/)");
    bool tls = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        std::smatch m;
        const std::string text = log();
        if (std::regex_search(text, m, address)) {
            port_ = std::stoi(m[2].str());
            tls = m[1].str() == "https";
            break;
        }
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            ADD_FAILURE() << "hemoscan serve exited early:\n" << text;
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (port_ < 0) {
        ADD_FAILURE() << "hemoscan serve did not report its port:\n" << log();
        return;
    }
    if (tls) return;  // serving since it logged its address; this plain-HTTP client cannot ask it
    auto c = client();
    for (int i = 0; i < 500; ++i) {
        auto res = c.Get("/health");
        if (res && res->status == 200) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "/health did not answer:\n" << log();
    port_ = -1;
}

ServeProcess::~ServeProcess() {
    stop();
    std::error_code ec;
    fs::remove(log_path_, ec);
}

httplib::Client ServeProcess::client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(5);
    c.set_read_timeout(60);
    c.set_write_timeout(60);
    return c;
}

int ServeProcess::stop() {
    if (pid_ < 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 1000; ++i) {
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return -1;
}

void ServeProcess::kill_hard() {
    if (pid_ < 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
}

std::string ServeProcess::log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace hemoscan::test

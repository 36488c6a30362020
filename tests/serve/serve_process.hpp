#pragma once
// Runs `hemoscan serve` as a child process on a free loopback port, for black-box tests.
#include <httplib.h>

#include <filesystem>
#include <string>
#include <vector>

namespace hemoscan::test {

// A loopback TCP port nothing listens on now (the OS picks it; the caller binds it right after).
int free_tcp_port();

class ServeProcess {
public:
    // Starts `hemoscan serve --model MODEL --data-dir DATA --port 0 --compute-threads 1 EXTRA...`,
    // waits for the port in its log and for /health. Fails the test (ADD_FAILURE) when it does not come up.
    ServeProcess(const std::filesystem::path& model, const std::filesystem::path& data_dir,
                 const std::vector<std::string>& extra = {});
    ~ServeProcess();
    ServeProcess(const ServeProcess&) = delete;
    ServeProcess& operator=(const ServeProcess&) = delete;

    bool up() const { return port_ > 0; }
    int port() const { return port_; }
    int pid() const { return pid_; }
    httplib::Client client() const;
    // SIGTERM, then waits; returns the exit code (-1 if it had to be killed).
    int stop();
    // SIGKILL (a crash or an OOM kill: nothing runs on the way out), then waits.
    void kill_hard();
    std::string log() const;

private:
    std::filesystem::path log_path_;
    int pid_ = -1;
    int port_ = -1;
};

}  // namespace hemoscan::test

// The process's place in a group (torchrun's environment) and the sharding of items over ranks.
#include "hemoscan/dist/env.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <numeric>

#include "hemoscan/error.hpp"
#include "hemoscan/util/random.hpp"

namespace hemoscan {

namespace {

int env_int(const std::function<const char*(const char*)>& get, const char* name, int fallback, int lo, int hi) {
    const char* v = get(name);
    if (v == nullptr || *v == '\0') return fallback;
    const std::string s(v);
    try {
        size_t used = 0;
        const long n = std::stol(s, &used);
        if (used == s.size() && n >= lo && n <= hi) return static_cast<int>(n);
    } catch (const std::exception&) {
    }
    throw UsageError(std::string("environment variable ") + name + "='" + s + "' must be an integer in " +
                     std::to_string(lo) + ".." + std::to_string(hi));
}

}  // namespace

DistEnv dist_env_from(const std::function<const char*(const char*)>& getter) {
    const auto get = getter ? getter : [](const char* name) -> const char* { return std::getenv(name); };
    DistEnv e;
    e.world_size = env_int(get, "WORLD_SIZE", 1, 1, 1 << 16);
    if (e.world_size == 1) return e;
    for (const char* required : {"RANK", "MASTER_ADDR", "MASTER_PORT"}) {
        const char* v = get(required);
        if (v == nullptr || *v == '\0') {
            throw UsageError(std::string("WORLD_SIZE=") + std::to_string(e.world_size) + " but " + required +
                             " is not set (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)");
        }
    }
    e.rank = env_int(get, "RANK", 0, 0, e.world_size - 1);
    e.local_rank = env_int(get, "LOCAL_RANK", 0, 0, e.world_size - 1);
    e.master_addr = get("MASTER_ADDR");
    e.master_port = env_int(get, "MASTER_PORT", 29500, 1, 65535);
    const char* agent = get("TORCHELASTIC_USE_AGENT_STORE");
    e.agent_store = agent != nullptr && std::string(agent) == "True";  // Python's str(True), as PyTorch tests it
    e.restart_count = env_int(get, "TORCHELASTIC_RESTART_COUNT", 0, 0, 1 << 30);
    return e;
}

int free_local_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw Error("cannot open a socket to find a free port");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
    ::close(fd);
    if (!ok) throw Error("cannot find a free port on the loopback interface");
    return ntohs(a.sin_port);
}

std::pair<size_t, size_t> shard_range(size_t n, int rank, int world) {
    if (world < 1 || rank < 0 || rank >= world) throw UsageError("`rank` must be in 0..world_size-1");
    const size_t w = static_cast<size_t>(world), r = static_cast<size_t>(rank);
    const size_t base = n / w, extra = n % w;
    const size_t begin = r * base + std::min(r, extra);
    return {begin, begin + base + (r < extra ? 1 : 0)};
}

}  // namespace hemoscan

#include "hemoscan/util/fs.hpp"

#include <atomic>
#include <openssl/evp.h>

#include <fstream>
#include <memory>
#include <vector>
#include <sstream>
#include <unistd.h>

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {
fs::path temp_sibling(const fs::path& path) {
    static std::atomic<unsigned> counter{0};
    std::string name = "." + path.stem().string() + ".tmp" + std::to_string(::getpid()) + "_" +
                       std::to_string(counter++) + path.extension().string();
    return path.parent_path() / name;
}
}  // namespace

void write_atomic_with(const fs::path& path, const std::function<void(const fs::path& tmp)>& write) {
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    const fs::path tmp = temp_sibling(path);
    try {
        write(tmp);
        fs::rename(tmp, path);
    } catch (...) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw;
    }
}

void write_file_atomic(const fs::path& path, const std::string& bytes) {
    write_atomic_with(path, [&](const fs::path& tmp) {
        std::ofstream out(tmp, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.close();
        if (!out) throw Error("cannot write " + path.string());
    });
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError(path.string() + ": cannot open file");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string sha256_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError(path.string() + ": cannot open file");
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw Error("sha256: OpenSSL failed");
    std::vector<char> buf(1 << 20);
    while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx.get(), digest, &n);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 15];
    }
    return out;
}

}  // namespace hemoscan

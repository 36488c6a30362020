// Issue 28, items 2 and 4: `hemoscan serve` against slow and hostile clients, and its access control
// (token, Host allow-list, same-origin check, TLS, deletion and retention). Black-box: a child process
// and raw sockets, httplib or curl as the client.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "hemoscan/util/fs.hpp"
#include "serve_fixture.hpp"
#include "serve_process.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using nlohmann::json;
using test::body;
using test::Part;
using test::post;
using test::raw_request;
using test::rss_mb;
using test::ServeProcess;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

// A connected socket that has sent `bytes` and then nothing more.
int open_stalled(int port, const std::string& bytes) {
    const int fd = test::connect_loopback(port);
    if (fd >= 0 && !bytes.empty()) ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    return fd;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string status_line(const std::string& answer) { return answer.substr(0, answer.find('\r')); }

const std::string kToken = "0123456789abcdef0123456789abcdef";

}  // namespace

class ServeHardening : public test::ServeFixture {};

// Four idle connections with unfinished headers used to block every worker (/health unanswered for 20 s);
// a 150 MB request line grew the server by 400 MB; a long Range header returned 63 MB for a 48 KB font.
TEST_F(ServeHardening, SlowIdleAndOversizedRequestsDoNotStarveOthers) {
    TempDir data;
    ServeProcess s(model(), data.path(), {"--threads", "1", "--timeout", "2"});
    ASSERT_TRUE(s.up());
    std::vector<int> stalled;
    for (int i = 0; i < 8; ++i) stalled.push_back(open_stalled(s.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-"));
    for (int i = 0; i < 8; ++i) stalled.push_back(open_stalled(s.port(), ""));
    auto c = s.client();
    for (int i = 0; i < 5; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        auto h = c.Get("/health");
        ASSERT_TRUE(h);
        EXPECT_EQ(h->status, 200);
        EXPECT_LT(seconds_since(t0), 1.0) << "with 16 stalled connections on one polling thread";
    }
    // The stalled connections are closed by the server after the idle time-out (2 s).
    const auto t0 = std::chrono::steady_clock::now();
    char buf[256];
    timeval tv{8, 0};
    setsockopt(stalled.front(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const ssize_t got = ::recv(stalled.front(), buf, sizeof(buf), 0);
    EXPECT_LE(got, 0) << std::string(buf, static_cast<size_t>(std::max<ssize_t>(got, 0)));
    EXPECT_LT(seconds_since(t0), 6.0);
    for (int fd : stalled) ::close(fd);

    const double before = rss_mb(s.pid());
    // A 20 MB request line and 400 KB of headers: refused from a bounded buffer.
    std::string r = raw_request(s.port(), "GET /" + std::string(20 << 20, 'a') + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    EXPECT_TRUE(r.empty() || r.rfind("HTTP/1.1 414", 0) == 0 || r.rfind("HTTP/1.1 431", 0) == 0) << status_line(r);
    std::string headers;
    for (int i = 0; i < 400; ++i) headers += "X-Filler-" + std::to_string(i) + ": " + std::string(1000, 'b') + "\r\n";
    r = raw_request(s.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + "\r\n");
    EXPECT_TRUE(r.empty() || r.rfind("HTTP/1.1 431", 0) == 0 || r.rfind("HTTP/1.1 414", 0) == 0) << status_line(r);
    EXPECT_LT(rss_mb(s.pid()), before + 30) << "the request line must not be buffered whole";
    // A Range header of 10,000 ranges: the asset once, whole (ranges are not served).
    auto page = c.Get("/assets/app.js");
    ASSERT_TRUE(page);
    ASSERT_EQ(page->status, 200);
    std::string ranges = "bytes=0-";
    for (int i = 0; i < 10000; ++i) ranges += ",0-";
    auto ranged = c.Get("/assets/app.js", {{"Range", ranges}});
    ASSERT_TRUE(ranged);
    EXPECT_EQ(ranged->status, 200);
    EXPECT_EQ(ranged->body.size(), page->body.size());
    EXPECT_EQ(c.Get("/health")->status, 200);
}

// Uploads beyond what the workers and the queue hold get 503 with Retry-After at once, and /health
// answers meanwhile (a bounded queue instead of an unbounded backlog).
TEST_F(ServeHardening, FullQueueAnswers503AndHealthStaysUp) {
    TempDir data;
    ServeProcess s(model(), data.path(), {"--workers", "1", "--queue", "0"});
    ASSERT_TRUE(s.up());
    const std::string zip = bytes("Doe_Jane.zip");
    const int n = 6;
    std::vector<int> status(n, 0);
    std::vector<std::string> retry(n);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
            auto c = s.client();
            ++ready;
            while (ready < n) std::this_thread::yield();
            auto r = post(c, {{"Doe_Jane.zip", zip, "application/zip"}});
            if (!r) return;
            status[static_cast<size_t>(i)] = r->status;
            retry[static_cast<size_t>(i)] = r->get_header_value("Retry-After");
        });
    }
    auto c = s.client();
    auto h = c.Get("/health");
    for (auto& t : threads) t.join();
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    int created = 0, busy = 0;
    for (int i = 0; i < n; ++i) {
        if (status[static_cast<size_t>(i)] == 201) ++created;
        if (status[static_cast<size_t>(i)] == 503) {
            ++busy;
            EXPECT_FALSE(retry[static_cast<size_t>(i)].empty());
        }
    }
    EXPECT_EQ(created + busy, n);
    EXPECT_GE(created, 1);
    EXPECT_GE(busy, 1) << "six simultaneous uploads with room for one";
    EXPECT_EQ(body(c.Get("/api/results"))["total"], created);
}

class ServeSecurity : public test::ServeFixture {};

TEST_F(ServeSecurity, TokenHostOriginAndDelete) {
    TempDir data;
    test::write_text(data.path() / "token", kToken + "\n");
    ServeProcess s(model(), data.path() / "d",
                   {"--token-file", (data.path() / "token").string(), "--allowed-host", "hemoscan.example"});
    ASSERT_TRUE(s.up());
    auto c = s.client();
    // The page and /health load without the token; the API does not.
    EXPECT_EQ(c.Get("/")->status, 200);
    EXPECT_EQ(c.Get("/health")->status, 200);
    auto r = c.Get("/api/model");
    EXPECT_EQ(r->status, 401);
    EXPECT_NE(r->get_header_value("WWW-Authenticate").find("Bearer"), std::string::npos);
    EXPECT_EQ(c.Get("/api/results", {{"Authorization", "Bearer " + std::string(32, 'x')}})->status, 401);
    EXPECT_EQ(c.Get("/api/results/0123456789abcdef/slices/0.png")->status, 401);
    EXPECT_EQ(post(c, {{"000.png", bytes("data/000.png"), "image/png"}})->status, 401);
    // The page's session: the token once, then a cookie that other sites' pages cannot send.
    const httplib::Headers bearer = {{"Authorization", "Bearer " + kToken}};
    r = c.Post("/api/session", bearer, "", "text/plain");
    ASSERT_EQ(r->status, 200) << r->body;
    const std::string cookie = r->get_header_value("Set-Cookie");
    EXPECT_NE(cookie.find("hemoscan_token=" + kToken), std::string::npos) << cookie;
    EXPECT_NE(cookie.find("HttpOnly"), std::string::npos) << cookie;
    EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos) << cookie;
    EXPECT_EQ(c.Get("/api/model", {{"Cookie", "hemoscan_token=" + kToken}})->status, 200);
    c.set_default_headers(bearer);
    r = post(c, {{"000.png", bytes("data/000.png"), "image/png"}});
    ASSERT_EQ(r->status, 201) << r->body;
    const std::string id = body(r)["id"];

    // DNS rebinding: a name the server does not answer to; an allowed one; an IP literal.
    auto get_with_host = [&](const std::string& host) {
        return status_line(raw_request(s.port(), "GET /health HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"));
    };
    EXPECT_EQ(get_with_host("attacker.example:" + std::to_string(s.port())), "HTTP/1.1 421 Misdirected Request");
    EXPECT_EQ(get_with_host("hemoscan.example"), "HTTP/1.1 200 OK");
    EXPECT_EQ(get_with_host("127.0.0.1:" + std::to_string(s.port())), "HTTP/1.1 200 OK");

    // Cross-origin requests that change data are refused, token or not; same-origin ones pass.
    const std::string own = "http://127.0.0.1:" + std::to_string(s.port());
    httplib::MultipartFormDataItems image = {{"file", bytes("data/000.png"), "000.png", "image/png"}};
    EXPECT_EQ(c.Post("/api/predict", {{"Origin", "http://attacker.example"}}, image)->status, 403);
    EXPECT_EQ(c.Post("/api/predict", {{"Sec-Fetch-Site", "cross-site"}}, image)->status, 403);
    EXPECT_EQ(c.Delete(("/api/results/" + id).c_str(), {{"Origin", "http://attacker.example"}})->status, 403);
    EXPECT_EQ(body(c.Get("/api/results"))["total"], 1);
    EXPECT_EQ(c.Post("/api/predict", {{"Origin", own}, {"Sec-Fetch-Site", "same-origin"}}, image)->status, 201);

    // DELETE removes the row and the files; a second DELETE is a 404.
    ASSERT_TRUE(fs::exists(data.path() / "d" / "results" / id));
    r = c.Delete(("/api/results/" + id).c_str(), {{"Origin", own}});
    EXPECT_EQ(r->status, 204) << r->body;
    EXPECT_EQ(c.Get(("/api/results/" + id).c_str())->status, 404);
    EXPECT_EQ(c.Get(("/api/results/" + id + "/slices/0.png").c_str())->status, 404);
    EXPECT_FALSE(fs::exists(data.path() / "d" / "results" / id));
    EXPECT_EQ(c.Delete(("/api/results/" + id).c_str())->status, 404);
    EXPECT_EQ(body(c.Get("/api/results"))["total"], 1);
    // Neither the token nor file names reach the log.
    EXPECT_EQ(s.stop(), 0);
    EXPECT_EQ(s.log().find(kToken), std::string::npos) << s.log();
}

TEST_F(ServeSecurity, StartupRefusals) {
    TempDir data;
    const std::string base = "serve --model " + test::shell_quote(model()) + " --port 0 --data-dir " +
                             test::shell_quote(data.path() / "d");
    // Every interface without a token: refused, saying what to do.
    auto r = test::run_hemoscan(base + " --host 0.0.0.0");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--token-file"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--insecure"), std::string::npos) << r.output;
    // A token that is too short to be one.
    test::write_text(data.path() / "short", "secret\n");
    r = test::run_hemoscan(base + " --token-file " + test::shell_quote(data.path() / "short"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("short"), std::string::npos) << r.output;
    // Half a TLS setup, and a certificate that is not one.
    r = test::run_hemoscan(base + " --tls-cert " + test::shell_quote(data.path() / "short"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    test::write_text(data.path() / "token", kToken);
    r = test::run_hemoscan(base + " --token-file " + test::shell_quote(data.path() / "token") + " --tls-cert " +
                           test::shell_quote(data.path() / "short") + " --tls-key " +
                           test::shell_quote(data.path() / "short"));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("TLS"), std::string::npos) << r.output;
}

// HTTPS with a self-signed certificate (openssl), asked with curl; plain HTTP on the same port gets nothing.
TEST_F(ServeSecurity, Https) {
    if (test::run_command("command -v openssl && command -v curl").exit_code != 0) {
        GTEST_SKIP() << "openssl or curl missing (scripts/setup.sh --tests installs them)";
    }
    TempDir data;
    const fs::path key = data.path() / "key.pem", cert = data.path() / "cert.pem";
    auto r = test::run_command("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout " +
                               test::shell_quote(key) + " -out " + test::shell_quote(cert) + " 2>&1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    test::write_text(data.path() / "token", kToken);
    ServeProcess s(model(), data.path() / "d",
                   {"--token-file", (data.path() / "token").string(), "--tls-cert", cert.string(), "--tls-key",
                    key.string()});
    ASSERT_TRUE(s.up());
    const std::string port = std::to_string(s.port());
    const std::string curl = "curl -sS -i --max-time 20 --cacert " + test::shell_quote(cert) + " --resolve localhost:" +
                             port + ":127.0.0.1 ";
    r = test::run_command(curl + "-H 'Authorization: Bearer " + kToken + "' https://localhost:" + port + "/api/model");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.rfind("HTTP/1.1 200", 0), 0u) << r.output;
    EXPECT_NE(r.output.find("Strict-Transport-Security"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("\"labels\""), std::string::npos) << r.output;
    r = test::run_command(curl + "-X POST -H 'Authorization: Bearer " + kToken + "' https://localhost:" + port +
                          "/api/session");
    EXPECT_NE(r.output.find("; Secure"), std::string::npos) << r.output;
    r = test::run_command(curl + "https://localhost:" + port + "/api/model");
    EXPECT_EQ(r.output.rfind("HTTP/1.1 401", 0), 0u) << r.output;
    // Plain HTTP to the HTTPS port: no HTTP answer.
    const std::string plain = raw_request(s.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 5);
    EXPECT_EQ(plain.rfind("HTTP/1.1 200", 0), std::string::npos) << plain;
}

// --keep-days: results older than that are deleted at start (and hourly), row and files.
TEST_F(ServeSecurity, RetentionDeletesOldResults) {
    TempDir data;
    std::string old_id, new_id;
    {
        ServeProcess s(model(), data.path());
        ASSERT_TRUE(s.up());
        auto c = s.client();
        old_id = body(post(c, {{"000.png", bytes("data/000.png"), "image/png"}}))["id"];
        new_id = body(post(c, {{"001.png", bytes("data/001.png"), "image/png"}}))["id"];
        EXPECT_EQ(s.stop(), 0);
    }
    // Age one result by 40 days in the database.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((data.path() / "results.db").c_str(), &db), SQLITE_OK);
    const std::string sql = "UPDATE results SET created = '2000-01-01T00:00:00Z' WHERE id = '" + old_id + "'";
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    ServeProcess s(model(), data.path(), {"--keep-days", "30"});
    ASSERT_TRUE(s.up());
    auto c = s.client();
    json list = body(c.Get("/api/results"));
    ASSERT_EQ(list["total"], 1) << list.dump();
    EXPECT_EQ(list["results"][0]["id"], new_id);
    EXPECT_EQ(c.Get(("/api/results/" + old_id).c_str())->status, 404);
    EXPECT_FALSE(fs::exists(data.path() / "results" / old_id));
    EXPECT_TRUE(fs::exists(data.path() / "results" / new_id));
    EXPECT_EQ(body(c.Get("/api/model"))["retention_days"], 30);
}

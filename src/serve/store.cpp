#include "serve/store.hpp"

#include <sqlite3.h>

#include <cstdint>
#include <random>

#include "hemoscan/error.hpp"

namespace hemoscan::serve {

namespace {

// Finalises a prepared statement however the scope ends.
struct Statement {
    sqlite3_stmt* stmt = nullptr;
    Statement(sqlite3* db, const char* sql, const std::filesystem::path& path) {
        if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
            throw InputError(path.string() + ": " + sqlite3_errmsg(db));
        }
    }
    ~Statement() { sqlite3_finalize(stmt); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    void bind(int index, const std::string& text) {
        sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    }
    std::string column(int index) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, index));
        return text ? std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt, index))) : std::string();
    }
};

}  // namespace

ResultStore::ResultStore(const std::filesystem::path& db_path) : path_(db_path) {
    if (sqlite3_open_v2(db_path.string().c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
        std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        throw InputError(db_path.string() + ": cannot open database (" + message + ")");
    }
    sqlite3_busy_timeout(db_, 5000);
    char* error = nullptr;
    // WAL: readers do not block the writer; synchronous=NORMAL is durable across process crashes.
    const char* schema =
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
        "CREATE TABLE IF NOT EXISTS results (id TEXT PRIMARY KEY, created TEXT NOT NULL, kind TEXT NOT NULL,"
        " name TEXT NOT NULL, finding TEXT NOT NULL, json TEXT NOT NULL);"
        "CREATE INDEX IF NOT EXISTS results_created ON results (created);";
    if (sqlite3_exec(db_, schema, nullptr, nullptr, &error) != SQLITE_OK) {
        std::string message = error ? error : "unknown error";
        sqlite3_free(error);
        sqlite3_close(db_);
        throw InputError(db_path.string() + ": cannot create the results table (" + message + ")");
    }
}

ResultStore::~ResultStore() { sqlite3_close(db_); }

void ResultStore::insert(const nlohmann::json& result) {
    std::lock_guard<std::mutex> lock(mutex_);
    Statement s(db_, "INSERT INTO results (id, created, kind, name, finding, json) VALUES (?, ?, ?, ?, ?, ?)", path_);
    s.bind(1, result.at("id").get<std::string>());
    s.bind(2, result.at("created").get<std::string>());
    s.bind(3, result.at("kind").get<std::string>());
    s.bind(4, result.at("name").get<std::string>());
    s.bind(5, result.at("finding").get<std::string>());
    s.bind(6, result.dump());
    if (sqlite3_step(s.stmt) != SQLITE_DONE) throw InputError(path_.string() + ": " + sqlite3_errmsg(db_));
}

std::optional<nlohmann::json> ResultStore::get(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    Statement s(db_, "SELECT json FROM results WHERE id = ?", path_);
    s.bind(1, id);
    if (sqlite3_step(s.stmt) != SQLITE_ROW) return std::nullopt;
    return nlohmann::json::parse(s.column(0));
}

std::vector<StoredSummary> ResultStore::list(int limit, int offset) {
    std::lock_guard<std::mutex> lock(mutex_);
    // rowid breaks ties between results created within the same second.
    Statement s(db_, "SELECT id, created, kind, name, finding FROM results ORDER BY created DESC, rowid DESC "
                     "LIMIT ? OFFSET ?", path_);
    sqlite3_bind_int(s.stmt, 1, limit);
    sqlite3_bind_int(s.stmt, 2, offset);
    std::vector<StoredSummary> out;
    while (sqlite3_step(s.stmt) == SQLITE_ROW) {
        out.push_back({s.column(0), s.column(1), s.column(2), s.column(3), s.column(4)});
    }
    return out;
}

bool ResultStore::remove(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    Statement s(db_, "DELETE FROM results WHERE id = ?", path_);
    s.bind(1, id);
    if (sqlite3_step(s.stmt) != SQLITE_DONE) throw InputError(path_.string() + ": " + sqlite3_errmsg(db_));
    return sqlite3_changes(db_) > 0;
}

std::vector<std::string> ResultStore::created_before(const std::string& created) {
    std::lock_guard<std::mutex> lock(mutex_);
    // `created` is ISO 8601 UTC ("2026-12-06T05:53:01Z"): text order is time order.
    Statement s(db_, "SELECT id FROM results WHERE created < ? ORDER BY created", path_);
    s.bind(1, created);
    std::vector<std::string> out;
    while (sqlite3_step(s.stmt) == SQLITE_ROW) out.push_back(s.column(0));
    return out;
}

long ResultStore::count() {
    std::lock_guard<std::mutex> lock(mutex_);
    Statement s(db_, "SELECT COUNT(*) FROM results", path_);
    return sqlite3_step(s.stmt) == SQLITE_ROW ? static_cast<long>(sqlite3_column_int64(s.stmt, 0)) : 0;
}

std::string new_result_id() {
    static std::mutex mutex;
    static std::random_device device;
    std::lock_guard<std::mutex> lock(mutex);
    const std::uint64_t v = (static_cast<std::uint64_t>(device()) << 32) ^ device();
    static const char* hex = "0123456789abcdef";
    std::string id(16, '0');
    for (int i = 0; i < 16; ++i) id[static_cast<size_t>(i)] = hex[(v >> (60 - 4 * i)) & 0xF];
    return id;
}

bool valid_result_id(const std::string& id) {
    if (id.size() != 16) return false;
    for (char c : id) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

}  // namespace hemoscan::serve

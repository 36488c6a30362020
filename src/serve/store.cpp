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
    void bind(int index, long long value) { sqlite3_bind_int64(stmt, index, value); }
    long long integer(int index) { return static_cast<long long>(sqlite3_column_int64(stmt, index)); }
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
        "CREATE INDEX IF NOT EXISTS results_created ON results (created);"
        "CREATE TABLE IF NOT EXISTS worklist (id TEXT PRIMARY KEY, source TEXT NOT NULL, name TEXT NOT NULL,"
        " patient TEXT NOT NULL, caller TEXT NOT NULL, status TEXT NOT NULL, received_ms INTEGER NOT NULL,"
        " complete_ms INTEGER NOT NULL, done_ms INTEGER NOT NULL, sent_ms INTEGER NOT NULL, slices INTEGER NOT NULL,"
        " positive INTEGER NOT NULL, finding TEXT NOT NULL, error TEXT NOT NULL);"
        "CREATE INDEX IF NOT EXISTS worklist_received ON worklist (received_ms);";
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
    const bool had = sqlite3_changes(db_) > 0;
    Statement w(db_, "DELETE FROM worklist WHERE id = ?", path_);
    w.bind(1, id);
    if (sqlite3_step(w.stmt) != SQLITE_DONE) throw InputError(path_.string() + ": " + sqlite3_errmsg(db_));
    return had;
}

namespace {

constexpr const char* kWorkColumns =
    "id, source, name, patient, caller, status, received_ms, complete_ms, done_ms, sent_ms, slices, positive, "
    "finding, error";

WorkItem read_work(Statement& s) {
    WorkItem w;
    w.id = s.column(0);
    w.source = s.column(1);
    w.name = s.column(2);
    w.patient = s.column(3);
    w.caller = s.column(4);
    w.status = s.column(5);
    w.received_ms = s.integer(6);
    w.complete_ms = s.integer(7);
    w.done_ms = s.integer(8);
    w.sent_ms = s.integer(9);
    w.slices = static_cast<int>(s.integer(10));
    w.positive = s.integer(11) != 0;
    w.finding = s.column(12);
    w.error = s.column(13);
    return w;
}

}  // namespace

void ResultStore::put(const WorkItem& w) {
    std::lock_guard<std::mutex> lock(mutex_);
    Statement s(db_, (std::string("INSERT OR REPLACE INTO worklist (") + kWorkColumns +
                      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").c_str(), path_);
    s.bind(1, w.id);
    s.bind(2, w.source);
    s.bind(3, w.name);
    s.bind(4, w.patient);
    s.bind(5, w.caller);
    s.bind(6, w.status);
    s.bind(7, w.received_ms);
    s.bind(8, w.complete_ms);
    s.bind(9, w.done_ms);
    s.bind(10, w.sent_ms);
    s.bind(11, static_cast<long long>(w.slices));
    s.bind(12, static_cast<long long>(w.positive ? 1 : 0));
    s.bind(13, w.finding);
    s.bind(14, w.error);
    if (sqlite3_step(s.stmt) != SQLITE_DONE) throw InputError(path_.string() + ": " + sqlite3_errmsg(db_));
}

std::optional<WorkItem> ResultStore::work_item(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    Statement s(db_, (std::string("SELECT ") + kWorkColumns + " FROM worklist WHERE id = ?").c_str(), path_);
    s.bind(1, id);
    if (sqlite3_step(s.stmt) != SQLITE_ROW) return std::nullopt;
    return read_work(s);
}

std::vector<WorkItem> ResultStore::worklist(int limit, int offset) {
    std::lock_guard<std::mutex> lock(mutex_);
    // Triage order: suspected bleeds, then studies without a result yet, then normal and failed ones.
    Statement s(db_, (std::string("SELECT ") + kWorkColumns +
                      " FROM worklist ORDER BY CASE WHEN positive != 0 THEN 0 WHEN status IN ('received', "
                      "'analysing') THEN 1 ELSE 2 END, received_ms DESC, rowid DESC LIMIT ? OFFSET ?").c_str(),
                path_);
    sqlite3_bind_int(s.stmt, 1, limit);
    sqlite3_bind_int(s.stmt, 2, offset);
    std::vector<WorkItem> out;
    while (sqlite3_step(s.stmt) == SQLITE_ROW) out.push_back(read_work(s));
    return out;
}

long ResultStore::worklist_count() {
    std::lock_guard<std::mutex> lock(mutex_);
    Statement s(db_, "SELECT COUNT(*) FROM worklist", path_);
    return sqlite3_step(s.stmt) == SQLITE_ROW ? static_cast<long>(sqlite3_column_int64(s.stmt, 0)) : 0;
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

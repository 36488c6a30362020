#pragma once
// Past results in SQLite (DATA_DIR/results.db), so that a restart loses nothing. One table:
//   results(id TEXT PRIMARY KEY, created TEXT, kind TEXT, name TEXT, finding TEXT, json TEXT)
// The rendered inputs and heatmaps of a result live in DATA_DIR/results/<id>/ (see analysis.hpp).
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

struct sqlite3;

namespace hemoscan::serve {

struct StoredSummary {
    std::string id, created, kind, name, finding;
};

class ResultStore {
public:
    // Opens (or creates) the database. Throws InputError naming the file when it cannot.
    explicit ResultStore(const std::filesystem::path& db_path);
    ~ResultStore();
    ResultStore(const ResultStore&) = delete;
    ResultStore& operator=(const ResultStore&) = delete;

    // `result` must hold id, created, kind, name and finding (strings).
    void insert(const nlohmann::json& result);
    std::optional<nlohmann::json> get(const std::string& id);
    // Newest first.
    std::vector<StoredSummary> list(int limit, int offset);
    long count();
    // Removes a result's row; false when there was none.
    bool remove(const std::string& id);
    // Ids of the results created before `created` (same format: "YYYY-MM-DDTHH:MM:SSZ"), oldest first.
    std::vector<std::string> created_before(const std::string& created);

private:
    std::filesystem::path path_;
    sqlite3* db_ = nullptr;
    std::mutex mutex_;  // one connection shared by the worker threads
};

// 16 random lower-case hex digits (64 bits from the OS): ids are not guessable and do not collide
// across restarts, so they are deliberately not seeded.
std::string new_result_id();
// True for exactly 16 lower-case hex digits: the only ids that ever reach the store or the disk.
bool valid_result_id(const std::string& id);

}  // namespace hemoscan::serve

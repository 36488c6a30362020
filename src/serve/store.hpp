#pragma once
// Past results in SQLite (DATA_DIR/results.db), so that a restart loses nothing. Two tables:
//   results(id TEXT PRIMARY KEY, created TEXT, kind TEXT, name TEXT, finding TEXT, json TEXT)
//   worklist(id, source, name, patient, caller, status, received/complete/done/sent times, ...): every study
//   the server was given (page, REST API, DICOM), from its arrival on, also before or without a result.
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

// One study on the triage worklist. Its id is the result's id (the result exists once status is done).
struct WorkItem {
    std::string id;
    std::string source;           // web (page or REST API) | dicom
    std::string name;             // what the list shows: file name(s), or series description and slice count
    std::string patient;          // PatientID of DICOM arrivals (the radiologist opens the study by it)
    std::string caller;           // calling AE title (DICOM)
    std::string status;           // received | analysing | done | sending | sent | failed | send-failed
    long long received_ms = 0;    // first file (ms since the epoch)
    long long complete_ms = 0;    // last file / upload complete
    long long done_ms = 0;        // result stored (or failure)
    long long sent_ms = 0;        // outputs stored in the destination
    int slices = 0;
    bool positive = false;        // suspected bleed: sorts to the top
    std::string finding;
    std::string error;            // why it failed (failed, send-failed)
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

    // The worklist. put() inserts or replaces an item whole; remove() above drops it too.
    void put(const WorkItem& item);
    std::optional<WorkItem> work_item(const std::string& id);
    // Suspected bleeds first, then studies still being analysed, then the rest; newest first within each.
    std::vector<WorkItem> worklist(int limit, int offset);
    long worklist_count();

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

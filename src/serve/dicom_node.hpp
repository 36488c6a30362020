#pragma once
// The DICOM side of the server (`hemoscan listen`, `serve --dicom-port`), on DCMTK's network classes:
//   DicomNode  a storage SCP (C-ECHO, C-STORE of CT and MR images) that keeps every received file on
//              disk (DATA_DIR/dicom/incoming/<id>/, written to a temporary name and renamed) and hands a
//              series to its owner once no file has arrived for it for a while;
//   Outbox     a persistent queue of result objects to C-STORE to a destination (DATA_DIR/dicom/outbox/
//              <id>/), retried with back-off and after a restart, never dropped.
// A received file is on disk before its C-STORE is answered, so a killed process loses nothing the
// sender was told was stored: at start the node takes up every folder left in incoming/ again.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace hemoscan::serve {

// Where to send results: AE title, host and port ("PACS@10.0.0.5:104").
struct DicomPeer {
    std::string aet, host;
    int port = 0;
    std::string str() const { return aet + "@" + host + ":" + std::to_string(port); }
};

// Parses AET@HOST:PORT (AE titles: 1-16 characters, no backslash or control characters). UsageError.
DicomPeer parse_dicom_peer(const std::string& spec);

// Checks an AE title (1-16 printable characters, no backslash). UsageError naming `what`.
void check_ae_title(const std::string& aet, const std::string& what);

struct DicomNodeOptions {
    std::string aet = "HEMOSCAN";
    int port = 11112;                        // on every interface (DCMTK binds no single address)
    std::vector<std::string> allowed_callers;  // calling AE titles accepted (empty: any)
    double idle_s = 3;                       // a series is complete after this long without a new file...
    double after_release_s = 1;              // ...or this long after the association that brought it ended
    int max_associations = 32;               // at once; more are rejected (temporary congestion)
    int acse_timeout_s = 30, dimse_timeout_s = 60;
};

// One received file, as the owner learns of it.
struct ArrivedSeries {
    std::string id;                 // the arrival's id (a result id: 16 hex digits)
    std::string caller;             // calling AE title
    std::string patient_id, study_uid, series_uid, modality, series_description;
};

struct DicomNodeHooks {
    // The first file of a new arrival is on disk (called on a receiving thread).
    std::function<void(const ArrivedSeries& series)> arrived;
    // An arrival is complete: its files are `files` (on the node's analysis thread, one at a time).
    // `first_ms`/`last_ms`: when its first and last file arrived (ms since the epoch; after a restart
    // the restart time). The node removes the folder when this returns, whether it threw or not.
    std::function<void(const ArrivedSeries& series, const std::vector<std::filesystem::path>& files,
                       long long first_ms, long long last_ms)>
        complete;
    // Rewrites each received file before it is kept (de-identification: `in` -> `out`, both in the
    // node's temporary folder); may throw InputError to refuse the file (answered with a failure
    // status). Optional.
    std::function<void(const std::filesystem::path& in, const std::filesystem::path& out)> transform;
};

class DicomNode {
public:
    // `root`: DATA_DIR/dicom (created). Takes up the folders a previous run left in root/incoming.
    DicomNode(DicomNodeOptions options, std::filesystem::path root, DicomNodeHooks hooks);
    ~DicomNode();
    DicomNode(const DicomNode&) = delete;
    DicomNode& operator=(const DicomNode&) = delete;

    // Binds the port (UsageError when it cannot) and starts receiving; returns the port.
    int start();
    // Stops accepting, lets associations in flight finish, and joins the threads (idempotent).
    void stop();
    // Arrivals received and not yet handed over, and being analysed.
    size_t pending() const;

    struct Impl;  // public so that the .cpp's DCMTK worker classes can reach it; defined there only

private:
    std::unique_ptr<Impl> impl_;
};

// Sends files to a peer in one association (C-STORE per file, the presentation contexts their SOP
// classes need). Throws InputError with the peer's or the network's reason when any file fails.
void send_dicom_files(const DicomPeer& peer, const std::string& own_aet, const std::vector<std::filesystem::path>& files,
                      int timeout_s = 30);

// C-ECHO to a peer: true when it answers with success.
bool echo_dicom_peer(const DicomPeer& peer, const std::string& own_aet, int timeout_s = 10);

struct OutboxOptions {
    DicomPeer peer;
    std::string own_aet = "HEMOSCAN";
    int retries = 5;            // attempts before an item is reported failed (it is still retried later)
    double retry_s = 2;         // first back-off; doubles per attempt, at most max_retry_s
    double max_retry_s = 300;
    int timeout_s = 30;
};

class Outbox {
public:
    // `dir`: DATA_DIR/dicom/outbox (created). `report(id, sent, error)` after each outcome: sent, or
    // failed `retries` times (and again each later failure). Items left by a previous run are sent.
    Outbox(OutboxOptions options, std::filesystem::path dir,
           std::function<void(const std::string& id, bool sent, const std::string& error)> report);
    ~Outbox();
    Outbox(const Outbox&) = delete;
    Outbox& operator=(const Outbox&) = delete;

    void start();
    void stop();
    // Copies `files` into the outbox as item `id` (atomically: a folder renamed into place) and wakes
    // the sender. InputError when the copy fails.
    void post(const std::string& id, const std::vector<std::filesystem::path>& files);
    size_t waiting() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace hemoscan::serve

// The DICOM node: a storage SCP pool (DCMTK dcmnet) that keeps received files on disk, a watcher that
// hands complete series to the server, and the sending side (DcmSCU) with its persistent outbox.
#include "serve/dicom_node.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/scppool.h>
#include <dcmtk/dcmnet/scpthrd.h>
#include <dcmtk/dcmnet/scu.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/strings.hpp"
#include "io/dcmtk_setup.hpp"
#include "serve/store.hpp"

namespace hemoscan::serve {

namespace fs = std::filesystem;

namespace {

long long now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// The transfer syntaxes accepted for images, in order of preference: uncompressed first (nothing to
// decode), then every compression DCMTK decodes here. JPEG 2000 is not among them: Debian's DCMTK
// has no JPEG 2000 codec, so a sender that offers nothing else is refused for that context.
OFList<OFString> image_transfer_syntaxes() {
    OFList<OFString> ts;
    for (const char* uid : {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax,
                            UID_DeflatedExplicitVRLittleEndianTransferSyntax, UID_BigEndianExplicitTransferSyntax,
                            UID_JPEGProcess14SV1TransferSyntax, UID_JPEGProcess14TransferSyntax,
                            UID_JPEGLSLosslessTransferSyntax, UID_JPEGLSLossyTransferSyntax,
                            UID_RLELosslessTransferSyntax, UID_JPEGProcess1TransferSyntax,
                            UID_JPEGProcess2_4TransferSyntax}) {
        ts.push_back(uid);
    }
    return ts;
}

// A SOP instance UID as a file name: UIDs are digits and dots; anything else is not used as a name.
std::string instance_file_name(const std::string& sop_uid) {
    const bool plain = !sop_uid.empty() && sop_uid.size() <= 64 &&
                       sop_uid.find_first_not_of("0123456789.") == std::string::npos && sop_uid.front() != '.';
    return (plain ? sop_uid : new_result_id()) + ".dcm";
}

std::string dataset_string(DcmItem& item, const DcmTagKey& tag) {
    OFString value;
    return item.findAndGetOFString(tag, value).good() ? std::string(value.c_str()) : std::string();
}

bool port_free(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return true;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));  // as DCMTK binds
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    ::close(fd);
    return ok;
}

}  // namespace

void check_ae_title(const std::string& aet, const std::string& what) {
    const bool printable = std::all_of(aet.begin(), aet.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '\\'; });
    if (aet.empty() || aet.size() > 16 || !printable || trim(aet).empty()) {
        throw UsageError(what + " '" + aet + "' is not an AE title (1-16 printable characters, no backslash)");
    }
}

DicomPeer parse_dicom_peer(const std::string& spec) {
    const size_t at = spec.find('@');
    const size_t colon = spec.rfind(':');
    if (at == std::string::npos || colon == std::string::npos || colon < at) {
        throw UsageError("'" + spec + "' is not AET@HOST:PORT (e.g. PACS@10.0.0.5:104)");
    }
    DicomPeer p;
    p.aet = spec.substr(0, at);
    p.host = spec.substr(at + 1, colon - at - 1);
    check_ae_title(p.aet, "the AE title of '" + spec + "'");
    if (p.host.empty()) throw UsageError("'" + spec + "' names no host");
    try {
        size_t used = 0;
        p.port = std::stoi(spec.substr(colon + 1), &used);
        if (used != spec.size() - colon - 1) p.port = -1;
    } catch (const std::exception&) {
        p.port = -1;
    }
    if (p.port < 1 || p.port > 65535) throw UsageError("'" + spec + "': the port must be 1..65535");
    return p;
}

// ---------------------------------------------------------------------------------------------------
// Receiving.

struct DicomNode::Impl {
    DicomNodeOptions options;
    fs::path root;
    DicomNodeHooks hooks;

    struct Arrival {
        ArrivedSeries series;
        long long first_ms = 0, last_ms = 0;
        long long deadline_ms = 0;  // complete at this time unless another file comes
        int open_associations = 0;  // associations that brought files and are still open
    };
    mutable std::mutex mutex;
    std::condition_variable wake;
    std::map<std::string, Arrival> arrivals;              // by id
    std::map<std::string, std::string> open_by_series;    // series UID -> id of its open arrival
    size_t analysing = 0;
    bool stopping = false;
    int port = -1;

    std::unique_ptr<DcmBaseSCPPool> pool;
    std::thread listener, watcher;

    fs::path incoming() const { return root / "incoming"; }
    fs::path tmp() const { return root / "tmp"; }

    long long idle_ms() const { return static_cast<long long>(options.idle_s * 1000); }

    // Keeps one received file: into the open arrival of its series, or a new one. Returns the arrival id.
    std::string keep(const fs::path& file, const ArrivedSeries& meta, const std::string& sop_uid) {
        bool is_new = false;
        ArrivedSeries series;
        {
            std::lock_guard<std::mutex> lock(mutex);
            auto open = open_by_series.find(meta.series_uid);
            std::string id;
            if (open == open_by_series.end()) {
                id = new_result_id();
                Arrival a;
                a.series = meta;
                a.series.id = id;
                a.first_ms = now_ms();
                arrivals[id] = a;
                open_by_series[meta.series_uid] = id;
                fs::create_directories(incoming() / id);
                is_new = true;
            } else {
                id = open->second;
            }
            Arrival& a = arrivals[id];
            fs::rename(file, incoming() / id / instance_file_name(sop_uid));
            a.last_ms = now_ms();
            a.deadline_ms = a.last_ms + idle_ms();
            series = a.series;
        }
        if (is_new && hooks.arrived) hooks.arrived(series);
        return series.id;
    }

    void association_opened(const std::string& id) {
        std::lock_guard<std::mutex> lock(mutex);
        auto it = arrivals.find(id);
        if (it != arrivals.end()) ++it->second.open_associations;
    }

    // The sender is done with these arrivals: complete them soon unless more comes.
    void association_ended(const std::set<std::string>& ids) {
        std::lock_guard<std::mutex> lock(mutex);
        const long long soon = now_ms() + static_cast<long long>(options.after_release_s * 1000);
        for (const auto& id : ids) {
            auto it = arrivals.find(id);
            if (it == arrivals.end()) continue;
            it->second.open_associations = std::max(0, it->second.open_associations - 1);
            if (it->second.open_associations == 0) it->second.deadline_ms = std::min(it->second.deadline_ms, soon);
        }
        wake.notify_all();
    }

    // Folders a previous run left: complete after the idle time from now (their senders may still be
    // sending the rest of a series).
    void take_up_leftovers() {
        std::error_code ec;
        fs::remove_all(tmp(), ec);
        fs::create_directories(tmp());
        fs::create_directories(incoming());
        for (const auto& e : fs::directory_iterator(incoming())) {
            const std::string id = e.path().filename().string();
            if (!e.is_directory() || !valid_result_id(id)) continue;
            Arrival a;
            a.series.id = id;
            for (const auto& f : fs::directory_iterator(e.path())) {
                try {
                    const ImageMeta m = read_dicom_meta(f.path());
                    a.series.patient_id = m.patient_id;
                    a.series.study_uid = m.study_uid;
                    a.series.series_uid = m.series_uid;
                    a.series.modality = m.modality;
                    a.series.series_description = m.series_description;
                    break;
                } catch (const std::exception&) {
                }
            }
            a.first_ms = a.last_ms = now_ms();
            a.deadline_ms = a.last_ms + idle_ms();
            logger().info("dicom: taking up arrival {} left by the previous run", id);
            arrivals[id] = a;
            if (!a.series.series_uid.empty()) open_by_series[a.series.series_uid] = id;
        }
    }

    std::vector<fs::path> files_of(const std::string& id) const {
        std::vector<fs::path> files;
        std::error_code ec;
        for (const auto& f : fs::directory_iterator(incoming() / id, ec)) {
            if (f.is_regular_file()) files.push_back(f.path());
        }
        std::sort(files.begin(), files.end());
        return files;
    }

    void watch() {
        std::unique_lock<std::mutex> lock(mutex);
        while (!stopping) {
            const long long now = now_ms();
            std::string due;
            long long next = now + 500;
            for (const auto& [id, a] : arrivals) {
                if (a.deadline_ms <= now) {
                    due = id;
                    break;
                }
                next = std::min(next, a.deadline_ms);
            }
            if (due.empty()) {
                wake.wait_for(lock, std::chrono::milliseconds(std::max<long long>(10, next - now)));
                continue;
            }
            Arrival a = arrivals[due];
            arrivals.erase(due);
            if (open_by_series.count(a.series.series_uid) && open_by_series[a.series.series_uid] == due) {
                open_by_series.erase(a.series.series_uid);  // later files of the series: a new arrival
            }
            ++analysing;
            lock.unlock();
            hand_over(a);
            lock.lock();
            --analysing;
        }
    }

    void hand_over(const Arrival& a) {
        const std::vector<fs::path> files = files_of(a.series.id);
        try {
            if (!files.empty() && hooks.complete) hooks.complete(a.series, files, a.first_ms, a.last_ms);
        } catch (const std::exception& e) {
            logger().error("dicom: arrival {}: {}", a.series.id, e.what());
        }
        std::error_code ec;
        fs::remove_all(incoming() / a.series.id, ec);
    }
};

namespace {

// One association at a time per worker thread of the pool.
class StoreWorker : public DcmBaseSCPPool::DcmBaseSCPWorker, public DcmThreadSCP {
public:
    StoreWorker(DcmBaseSCPPool& pool, DicomNode::Impl& node) : DcmBaseSCPWorker(pool), node_(node) {}

    OFCondition setSharedConfig(const DcmSharedSCPConfig& config) override {
        return DcmThreadSCP::setSharedConfig(config);
    }
    OFBool busy() override { return DcmThreadSCP::isConnected(); }

protected:
    OFCondition workerListen(T_ASC_Association* const assoc) override { return DcmThreadSCP::run(assoc); }

    OFBool checkCalledAETitleAccepted(const OFString& called) override {
        return trim(called.c_str()) == node_.options.aet;
    }

    OFBool checkCallingAETitleAccepted(const OFString& calling) override {
        const auto& allowed = node_.options.allowed_callers;
        const std::string aet = trim(calling.c_str());
        const bool ok = allowed.empty() || std::find(allowed.begin(), allowed.end(), aet) != allowed.end();
        if (!ok) logger().warn("dicom: refused an association from '{}' (not among the allowed callers)", aet);
        return ok;
    }

    void notifyAssociationTermination() override {
        node_.association_ended(ids_);
        ids_.clear();
        DcmThreadSCP::notifyAssociationTermination();
    }

    OFCondition handleIncomingCommand(T_DIMSE_Message* message, const DcmPresentationContextInfo& info) override {
        if (message->CommandField != DIMSE_C_STORE_RQ) return DcmThreadSCP::handleIncomingCommand(message, info);
        T_DIMSE_C_StoreRQ& request = message->msg.CStoreRQ;
        DcmDataset* dataset = nullptr;
        OFCondition cond = receiveSTORERequest(request, info.presentationContextID, dataset);
        std::unique_ptr<DcmDataset> owned(dataset);
        if (cond.bad()) return cond;
        const Uint16 status = store(*owned, request);
        return sendSTOREResponse(info.presentationContextID, request, status);
    }

private:
    Uint16 store(DcmDataset& dataset, const T_DIMSE_C_StoreRQ& request) {
        const fs::path tmp = node_.tmp() / (new_result_id() + ".dcm");
        try {
            DcmFileFormat file(&dataset);
            const OFCondition saved = file.saveFile(tmp.c_str(), EXS_Unknown);  // as received
            if (saved.bad()) throw InputError(std::string("cannot store the file: ") + saved.text());
            fs::path kept = tmp;
            if (node_.hooks.transform) {
                kept = node_.tmp() / (new_result_id() + ".dcm");
                node_.hooks.transform(tmp, kept);
                fs::remove(tmp);
            }
            const ImageMeta m = read_dicom_meta(kept);
            if (m.series_uid.empty()) throw InputError("the data set has no SeriesInstanceUID");
            ArrivedSeries meta;
            meta.caller = getPeerAETitle().c_str();
            meta.patient_id = m.patient_id;
            meta.study_uid = m.study_uid;
            meta.series_uid = m.series_uid;
            meta.modality = m.modality;
            meta.series_description = m.series_description;
            const std::string id = node_.keep(kept, meta, m.sop_uid);
            if (ids_.insert(id).second) node_.association_opened(id);
            return STATUS_Success;
        } catch (const std::exception& e) {
            std::error_code ec;
            fs::remove(tmp, ec);
            logger().warn("dicom: refused an instance from '{}' ({})", getPeerAETitle().c_str(), e.what());
            (void)request;
            return STATUS_STORE_Error_CannotUnderstand;
        }
    }

    DicomNode::Impl& node_;
    std::set<std::string> ids_;  // arrivals this association brought files to
};

class StorePool : public DcmBaseSCPPool {
public:
    explicit StorePool(DicomNode::Impl& node) : node_(node) {}

protected:
    DcmBaseSCPWorker* createSCPWorker() override { return new StoreWorker(*this, node_); }

private:
    DicomNode::Impl& node_;
};

}  // namespace

DicomNode::DicomNode(DicomNodeOptions options, fs::path root, DicomNodeHooks hooks) : impl_(std::make_unique<Impl>()) {
    check_ae_title(options.aet, "--aet");
    for (const auto& a : options.allowed_callers) check_ae_title(a, "the allowed caller");
    if (options.idle_s <= 0 || options.after_release_s < 0) throw UsageError("the idle times must be positive");
    if (options.port < 0 || options.port > 65535) throw UsageError("the DICOM port must be 1..65535");
    if (options.max_associations < 1) throw UsageError("`max_associations` must be at least 1");
    impl_->options = std::move(options);
    impl_->root = std::move(root);
    impl_->hooks = std::move(hooks);
    detail::ensure_dcmtk_decoders();
    impl_->take_up_leftovers();
}

DicomNode::~DicomNode() { stop(); }

int DicomNode::start() {
    Impl& n = *impl_;
    if (n.port >= 0) return n.port;
    if (!port_free(n.options.port)) {
        throw UsageError("cannot listen for DICOM on port " + std::to_string(n.options.port) + ": it is in use");
    }
    n.pool = std::make_unique<StorePool>(n);
    DcmSCPConfig& cfg = n.pool->getConfig();
    cfg.setAETitle(n.options.aet.c_str());
    cfg.setPort(static_cast<Uint16>(n.options.port));
    cfg.setConnectionBlockingMode(DUL_NOBLOCK);
    cfg.setConnectionTimeout(1);  // the listener looks at its stop flag once a second
    cfg.setACSETimeout(static_cast<Uint32>(n.options.acse_timeout_s));
    cfg.setDIMSETimeout(static_cast<Uint32>(n.options.dimse_timeout_s));
    cfg.setHostLookupEnabled(OFFalse);
    OFList<OFString> plain;
    plain.push_back(UID_LittleEndianExplicitTransferSyntax);
    plain.push_back(UID_LittleEndianImplicitTransferSyntax);
    cfg.addPresentationContext(UID_VerificationSOPClass, plain);
    const OFList<OFString> images = image_transfer_syntaxes();
    for (const char* sop : {UID_CTImageStorage, UID_MRImageStorage}) cfg.addPresentationContext(sop, images);
    n.pool->setMaxThreads(static_cast<Uint16>(n.options.max_associations));
    // DCMTK binds in listen(), on the listener thread: wait until the port is taken (or the thread gave
    // up), so that a port in use is an error here and a sender may connect once start() returns.
    auto failed = std::make_shared<std::atomic<bool>>(false);
    n.listener = std::thread([&n, failed] {
        const OFCondition cond = n.pool->listen();
        if (cond.bad()) {
            failed->store(true);
            logger().error("dicom: the listener stopped: {}", cond.text());
        }
    });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!failed->load() && port_free(n.options.port) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (failed->load() || port_free(n.options.port)) {
        n.pool->stopAfterCurrentAssociations();
        n.listener.join();
        n.pool.reset();
        throw UsageError("cannot listen for DICOM on port " + std::to_string(n.options.port));
    }
    n.port = n.options.port;
    n.watcher = std::thread([&n] { n.watch(); });
    logger().info("dicom: {} listening on port {}{}", n.options.aet, n.port,
                  n.arrivals.empty() ? "" : fmt::format(" ({} arrival(s) taken up)", n.arrivals.size()));
    return n.port;
}

void DicomNode::stop() {
    Impl& n = *impl_;
    if (n.pool) n.pool->stopAfterCurrentAssociations();
    if (n.listener.joinable()) n.listener.join();
    {
        std::lock_guard<std::mutex> lock(n.mutex);
        n.stopping = true;
    }
    n.wake.notify_all();
    if (n.watcher.joinable()) n.watcher.join();
    n.pool.reset();
}

size_t DicomNode::pending() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->arrivals.size() + impl_->analysing;
}

// ---------------------------------------------------------------------------------------------------
// Sending.

namespace {

struct FileClass {
    fs::path path;
    std::string sop_class, transfer_syntax;
};

FileClass file_class(const fs::path& path) {
    DcmFileFormat file;
    const OFCondition cond = file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_autoDetect);
    if (cond.bad()) throw InputError(path.string() + ": not a DICOM file (" + cond.text() + ")");
    FileClass c{path, dataset_string(*file.getMetaInfo(), DCM_MediaStorageSOPClassUID),
                dataset_string(*file.getMetaInfo(), DCM_TransferSyntaxUID)};
    if (c.sop_class.empty()) c.sop_class = dataset_string(*file.getDataset(), DCM_SOPClassUID);
    if (c.sop_class.empty()) throw InputError(path.string() + ": no SOP class");
    return c;
}

void configure_scu(DcmSCU& scu, const DicomPeer& peer, const std::string& own_aet, int timeout_s) {
    scu.setAETitle(own_aet.c_str());
    scu.setPeerAETitle(peer.aet.c_str());
    scu.setPeerHostName(peer.host.c_str());
    scu.setPeerPort(static_cast<Uint16>(peer.port));
    scu.setACSETimeout(static_cast<Uint32>(timeout_s));
    scu.setDIMSETimeout(static_cast<Uint32>(timeout_s));
    scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    scu.setConnectionTimeout(timeout_s);
}

void connect_scu(DcmSCU& scu, const DicomPeer& peer) {
    OFCondition cond = scu.initNetwork();
    if (cond.good()) cond = scu.negotiateAssociation();
    if (cond.bad()) throw InputError(peer.str() + ": association failed (" + std::string(cond.text()) + ")");
}

}  // namespace

void send_dicom_files(const DicomPeer& peer, const std::string& own_aet, const std::vector<fs::path>& files,
                      int timeout_s) {
    if (files.empty()) return;
    detail::ensure_dcmtk_decoders();
    std::vector<FileClass> classes;
    for (const auto& f : files) classes.push_back(file_class(f));
    DcmSCU scu;
    configure_scu(scu, peer, own_aet, timeout_s);
    std::set<std::pair<std::string, std::string>> contexts;
    for (const auto& c : classes) contexts.insert({c.sop_class, c.transfer_syntax});
    for (const auto& [sop, ts] : contexts) {
        // The file's own syntax first (no conversion), then the two uncompressed ones every SCP takes.
        OFList<OFString> syntaxes;
        if (!ts.empty()) syntaxes.push_back(ts.c_str());
        for (const char* uid : {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax}) {
            if (ts != uid) syntaxes.push_back(uid);
        }
        scu.addPresentationContext(sop.c_str(), syntaxes);
    }
    connect_scu(scu, peer);
    std::string failures;
    for (const auto& c : classes) {
        T_ASC_PresentationContextID pc = scu.findAnyPresentationContextID(c.sop_class.c_str(), c.transfer_syntax.c_str());
        Uint16 status = 0;
        OFCondition cond = pc == 0 ? OFCondition(EC_IllegalCall) : scu.sendSTORERequest(pc, c.path.c_str(), nullptr, status);
        if (pc == 0) {
            failures += "; " + c.path.filename().string() + ": the peer accepts no presentation context for its SOP class";
        } else if (cond.bad()) {
            failures += "; " + c.path.filename().string() + ": " + cond.text();
        } else if (status != STATUS_Success && (status & 0xF000) != 0xB000) {  // Bxxx: stored with a warning
            failures += "; " + c.path.filename().string() + ": status 0x" + fmt::format("{:04x}", status);
        }
        if (cond.bad() && !scu.isConnected()) break;
    }
    if (scu.isConnected()) scu.releaseAssociation();
    if (!failures.empty()) throw InputError(peer.str() + ": " + failures.substr(2));
}

bool echo_dicom_peer(const DicomPeer& peer, const std::string& own_aet, int timeout_s) {
    DcmSCU scu;
    configure_scu(scu, peer, own_aet, timeout_s);
    OFList<OFString> ts;
    ts.push_back(UID_LittleEndianImplicitTransferSyntax);
    scu.addPresentationContext(UID_VerificationSOPClass, ts);
    try {
        connect_scu(scu, peer);
    } catch (const InputError&) {
        return false;
    }
    const OFCondition cond = scu.sendECHORequest(0);
    scu.releaseAssociation();
    return cond.good();
}

struct Outbox::Impl {
    OutboxOptions options;
    fs::path dir;
    std::function<void(const std::string&, bool, const std::string&)> report;
    mutable std::mutex mutex;
    std::condition_variable wake;
    struct State {
        int attempts = 0;
        long long next_ms = 0;
    };
    std::map<std::string, State> items;
    bool stopping = false;
    std::thread sender;

    void scan() {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
            const std::string name = e.path().filename().string();
            if (!e.is_directory()) continue;
            if (valid_result_id(name)) {
                items.emplace(name, State{});
            } else if (name.rfind(".tmp-", 0) == 0) {
                fs::remove_all(e.path(), ec);  // a copy that never completed: its item was posted again
            }
        }
    }

    void run() {
        std::unique_lock<std::mutex> lock(mutex);
        while (!stopping) {
            const long long now = now_ms();
            std::string due;
            long long next = now + 60000;
            for (const auto& [id, s] : items) {
                if (s.next_ms <= now) {
                    due = id;
                    break;
                }
                next = std::min(next, s.next_ms);
            }
            if (due.empty()) {
                wake.wait_for(lock, std::chrono::milliseconds(std::max<long long>(10, next - now)));
                continue;
            }
            lock.unlock();
            std::string error;
            try {
                std::vector<fs::path> files;
                for (const auto& f : fs::directory_iterator(dir / due)) files.push_back(f.path());
                std::sort(files.begin(), files.end());
                send_dicom_files(options.peer, options.own_aet, files, options.timeout_s);
            } catch (const std::exception& e) {
                error = e.what();
            }
            lock.lock();
            State& s = items[due];
            if (error.empty()) {
                items.erase(due);
                std::error_code ec;
                fs::remove_all(dir / due, ec);
                logger().info("dicom: result {} stored in {}", due, options.peer.str());
            } else {
                ++s.attempts;
                const double backoff = std::min(options.max_retry_s, options.retry_s * std::pow(2.0, s.attempts - 1));
                s.next_ms = now_ms() + static_cast<long long>(backoff * 1000);
                logger().warn("dicom: sending result {} failed (attempt {}; next in {:.0f} s): {}", due, s.attempts,
                              backoff, error);
            }
            const bool tell = error.empty() || s.attempts >= options.retries;
            lock.unlock();
            if (tell && report) report(due, error.empty(), error);
            lock.lock();
        }
    }
};

Outbox::Outbox(OutboxOptions options, fs::path dir, std::function<void(const std::string&, bool, const std::string&)> report)
    : impl_(std::make_unique<Impl>()) {
    check_ae_title(options.own_aet, "--aet");
    if (options.retries < 1 || options.retry_s <= 0) throw UsageError("send retries and their delay must be positive");
    impl_->options = std::move(options);
    impl_->dir = std::move(dir);
    impl_->report = std::move(report);
    fs::create_directories(impl_->dir);
    impl_->scan();
}

Outbox::~Outbox() { stop(); }

void Outbox::start() {
    if (impl_->sender.joinable()) return;
    if (!impl_->items.empty()) logger().info("dicom: {} result(s) waiting to be sent", impl_->items.size());
    impl_->sender = std::thread([this] { impl_->run(); });
}

void Outbox::stop() {
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->wake.notify_all();
    if (impl_->sender.joinable()) impl_->sender.join();
}

void Outbox::post(const std::string& id, const std::vector<fs::path>& files) {
    const fs::path staging = impl_->dir / (".tmp-" + id);
    std::error_code ec;
    fs::remove_all(staging, ec);
    try {
        fs::create_directories(staging);
        for (const auto& f : files) fs::copy_file(f, staging / f.filename(), fs::copy_options::overwrite_existing);
        std::lock_guard<std::mutex> lock(impl_->mutex);
        fs::remove_all(impl_->dir / id, ec);
        fs::rename(staging, impl_->dir / id);
        impl_->items[id] = Impl::State{};
    } catch (const fs::filesystem_error& e) {
        fs::remove_all(staging, ec);
        throw InputError(std::string("outbox: ") + e.what());
    }
    impl_->wake.notify_all();
}

size_t Outbox::waiting() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->items.size();
}

}  // namespace hemoscan::serve

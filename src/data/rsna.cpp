// The RSNA 2019 intracranial hemorrhage layout (dataset.hpp form (d)): a long-format CSV
// (`ID,Label`, rows `ID_<image>_<subtype>`) beside one DICOM file per slice. Studies, patients and
// the slice order exist only in the DICOM headers, which are read here (without pixel data).
#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>

#include "data/detail.hpp"
#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/parallel.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan::data_detail {

namespace fs = std::filesystem;

namespace {

// hemoscan's order of the labels (as `hemoscan synth` manifests); the CSV's own order differs.
const std::array<const char*, 6> kRsnaLabels{"any",          "epidural",     "intraparenchymal",
                                             "intraventricular", "subarachnoid", "subdural"};

int label_index(const std::string& subtype) {
    for (size_t l = 0; l < kRsnaLabels.size(); ++l) {
        if (subtype == kRsnaLabels[l]) return static_cast<int>(l);
    }
    return -1;
}

struct RsnaImage {
    std::array<int, 6> labels{-1, -1, -1, -1, -1, -1};
    int line = 0;  // first CSV line of the image
};

// ID_<image>_<subtype> rows -> labels per image, in the CSV's order of first appearance.
std::vector<std::pair<std::string, RsnaImage>> read_labels(const CsvTable& table) {
    std::vector<std::pair<std::string, RsnaImage>> images;
    std::unordered_map<std::string, size_t> index;
    for (size_t r = 0; r < table.rows.size(); ++r) {
        const std::string where = table.path.string() + ":" + std::to_string(table.line_numbers[r]);
        const std::string& id = table.rows[r][0];
        const std::string& value = table.rows[r][1];
        const size_t cut = id.rfind('_');
        const int l = cut == std::string::npos ? -1 : label_index(id.substr(cut + 1));
        if (l < 0) throw InputError(where + ": '" + id + "' is not ID_<image>_<subtype> with one of the six subtypes");
        if (value != "0" && value != "1") throw InputError(where + ": Label of '" + id + "' is not 0/1 ('" + value + "')");
        auto [it, inserted] = index.emplace(id.substr(0, cut), images.size());
        if (inserted) images.push_back({id.substr(0, cut), RsnaImage{{-1, -1, -1, -1, -1, -1}, table.line_numbers[r]}});
        RsnaImage& image = images[it->second].second;
        if (image.labels[static_cast<size_t>(l)] >= 0) throw InputError(where + ": '" + id + "' given twice");
        image.labels[static_cast<size_t>(l)] = value == "1" ? 1 : 0;
    }
    for (const auto& [name, image] : images) {
        for (size_t l = 0; l < kRsnaLabels.size(); ++l) {
            if (image.labels[l] < 0) {
                throw InputError(table.path.string() + ":" + std::to_string(image.line) + ": image '" + name +
                                 "' has no '" + kRsnaLabels[l] + "' row");
            }
        }
    }
    return images;
}

// The label columns asked for (all six in hemoscan's order by default).
std::vector<int> selected_labels(const DatasetOptions& options, const fs::path& csv) {
    std::vector<int> out;
    for (const std::string& raw : options.labels) {
        const std::string name = to_lower(trim(raw));
        if (name.empty()) continue;
        const int l = label_index(name);
        if (l < 0) {
            throw InputError(csv.string() + ": unknown label '" + raw +
                             "' (available: any, epidural, intraparenchymal, intraventricular, subarachnoid, subdural)");
        }
        if (std::find(out.begin(), out.end(), l) != out.end()) throw UsageError("`labels`: label '" + raw + "' given twice");
        out.push_back(l);
    }
    if (out.empty()) {
        for (int l = 0; l < static_cast<int>(kRsnaLabels.size()); ++l) out.push_back(l);
    }
    return out;
}

// ID_<image>.dcm files anywhere below the folder, by stem.
std::unordered_map<std::string, fs::path> index_files(const fs::path& root) {
    std::unordered_map<std::string, fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied)) {
        std::error_code ec;
        if (!e.is_regular_file(ec) || to_lower(e.path().extension().string()) != ".dcm") continue;
        files.emplace(e.path().stem().string(), e.path());
    }
    return files;
}

// Position along the slice normal (cross product of the row and column directions).
double normal_position(const ImageMeta& m) {
    const auto& o = m.orientation;
    const double n[3] = {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
    return m.position[0] * n[0] + m.position[1] * n[1] + m.position[2] * n[2];
}

}  // namespace

std::optional<fs::path> find_rsna_csv(const fs::path& root) {
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(root)) {
        std::error_code ec;
        if (!e.is_regular_file(ec) || to_lower(e.path().extension().string()) != ".csv") continue;
        std::ifstream in(e.path());
        std::string header;
        std::getline(in, header);
        if (!header.empty() && header.back() == '\r') header.pop_back();
        if (header.rfind("\xEF\xBB\xBF", 0) == 0) header = header.substr(3);  // UTF-8 byte order mark
        if (to_lower(trim(header)) == "id,label") found.push_back(e.path());
    }
    if (found.size() > 1) {
        std::sort(found.begin(), found.end());
        throw InputError(root.string() + ": " + std::to_string(found.size()) + " CSV files with the header ID,Label (" +
                         found[0].filename().string() + ", " + found[1].filename().string() +
                         "): keep the one to use, or write a manifest.csv");
    }
    if (found.empty()) return std::nullopt;
    return found.front();
}

Dataset open_rsna(const fs::path& root, const fs::path& csv, const DatasetOptions& options) {
    const CsvTable table = read_csv(csv);
    if (table.rows.empty()) throw InputError(csv.string() + ": no data rows (only a header)");
    const auto images = read_labels(table);
    const std::vector<int> columns = selected_labels(options, csv);
    const auto files = index_files(root);

    Dataset ds;
    ds.root = root;
    ds.form = DatasetForm::Rsna;
    for (int l : columns) ds.label_names.push_back(kRsnaLabels[static_cast<size_t>(l)]);
    for (const auto& [name, image] : images) {
        const auto f = files.find(name);
        if (f == files.end()) {
            throw InputError(csv.string() + ":" + std::to_string(image.line) + ": image '" + name + "' not found (no " +
                             name + ".dcm below " + root.string() + ")");
        }
        DatasetItem item;
        item.path = f->second;
        item.id = name;
        item.line = image.line;
        for (int l : columns) item.labels.push_back(static_cast<float>(image.labels[static_cast<size_t>(l)]));
        ds.items.push_back(std::move(item));
    }
    if (files.size() > images.size()) {
        logger().info("{}: {} DICOM files have no labels in {} (not used)", root.string(), files.size() - images.size(),
                      csv.filename().string());
    }
    logger().info("{}: reading the headers of {} DICOM files (studies and slice order)", root.string(), ds.size());
    std::vector<ImageMeta> meta(ds.size());
    parallel_for_index(ds.size(), 0, [&](size_t i) { meta[i] = read_dicom_meta(ds.items[i].path); });
    // A study with several series (rare in RSNA) is ordered per series.
    std::map<std::string, std::set<std::string>> series_of;
    for (const ImageMeta& m : meta) series_of[m.study_uid].insert(m.series_uid);
    std::vector<double> keys(ds.size());
    for (size_t i = 0; i < ds.size(); ++i) {
        const ImageMeta& m = meta[i];
        DatasetItem& item = ds.items[i];
        if (m.study_uid.empty()) throw InputError(item.path.string() + ": no StudyInstanceUID");
        if (!m.has_position) throw InputError(item.path.string() + ": no ImagePositionPatient (cannot order the slices)");
        item.study = series_of[m.study_uid].size() > 1 ? m.study_uid + "#" + m.series_uid : m.study_uid;
        item.patient = m.patient_id.empty() ? m.study_uid : m.patient_id;
        keys[i] = normal_position(m);
    }
    order_slices(ds, keys, false, [&](size_t i) { return ds.items[i].path.string(); });
    return ds;
}

}  // namespace hemoscan::data_detail

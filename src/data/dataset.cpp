#include "hemoscan/data/dataset.hpp"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "data/detail.hpp"
#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/sequences.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

const char* to_string(DatasetForm form) {
    switch (form) {
    case DatasetForm::Manifest: return "manifest";
    case DatasetForm::LabelsCsv: return "labels.csv";
    case DatasetForm::ClassFolders: return "class-folders";
    case DatasetForm::Rsna: return "rsna";
    }
    return "?";
}

std::vector<size_t> Dataset::label_counts() const {
    std::vector<size_t> counts(label_names.size(), 0);
    for (const DatasetItem& item : items) {
        for (size_t l = 0; l < counts.size() && l < item.labels.size(); ++l) {
            if (item.labels[l] > 0.5f) ++counts[l];
        }
    }
    return counts;
}

size_t Dataset::patient_count() const {
    std::unordered_set<std::string> patients;
    for (const DatasetItem& item : items) patients.insert(item.patient);
    return patients.size();
}

std::string Dataset::fingerprint() const {
    std::uint64_t h = 1469598103934665603ULL;  // FNV-1a 64-bit
    auto feed = [&h](const std::string& s) {
        for (unsigned char ch : s) {
            h ^= ch;
            h *= 1099511628211ULL;
        }
        h ^= 0xFF;  // separator, so that ("ab","c") and ("a","bc") differ
        h *= 1099511628211ULL;
    };
    feed(to_string(form));
    for (const std::string& name : label_names) feed(name);
    for (const DatasetItem& item : items) {
        feed(data_detail::relative_path(item.path, root));
        std::string labels;
        for (float v : item.labels) labels += v > 0.5f ? '1' : '0';
        feed(labels);
        if (!item.mask.empty()) feed(data_detail::relative_path(item.mask, root));
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

namespace {

const char* const kImageExtensions[] = {"png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm"};

std::string join(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "(none)" : out;
}

std::string at_line(const CsvTable& table, size_t row) {
    return table.path.string() + ":" + std::to_string(table.line_numbers[row]);
}

bool is_01(const std::string& v) { return v == "0" || v == "1"; }

bool is_hidden(const fs::path& p) {
    const std::string name = p.filename().string();
    return !name.empty() && name[0] == '.';
}

// A regular file at `p`. The paths of a CSV are data: one the file system refuses (a name over 255
// bytes, a loop of links) is a missing file reported with its line, not a std::filesystem_error.
bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) || fs::is_directory(p, ec);  // a folder: a multi-sequence MR case
}

// A folder of one MR case: it holds an image or volume of the first wanted sequence (its stem is the
// name or ends with _name), or, with none wanted, only images named after known sequences (two or more).
bool is_case_folder(const fs::path& dir, const std::vector<std::string>& sequences) {
    const std::vector<std::string>& known = known_sequence_names();
    std::error_code ec;
    int named = 0, others = 0;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string stem = to_lower(sequence_stem(e.path()));
        if (!sequences.empty()) {
            const std::string n = to_lower(sequences.front());
            if (stem == n || ends_with(stem, "_" + n)) return true;
            continue;
        }
        (std::find(known.begin(), known.end(), stem) != known.end() ? named : others) += 1;
    }
    return sequences.empty() && named >= 2 && others == 0;
}

// An image or DICOM file, judged by extension (files without one are checked for DICOM content).
bool is_image_file(const fs::path& p) {
    const std::string ext = to_lower(p.extension().string());
    if (ext.empty()) return is_dicom_file(p);
    if (ext == ".dcm" || ext == ".dicom") return true;
    return is_image_2d_path(fs::path("x" + ext));
}

// The names asked for with --labels (trimmed, no empties); UsageError for a name given twice.
std::vector<std::string> requested_labels(const DatasetOptions& options) {
    std::vector<std::string> out;
    for (const std::string& raw : options.labels) {
        std::string name = trim(raw);
        if (name.empty()) continue;
        for (const std::string& prev : out) {
            if (to_lower(prev) == to_lower(name)) throw UsageError("`labels`: label '" + name + "' given twice");
        }
        out.push_back(name);
    }
    return out;
}

// Resolves the label columns of a CSV: `candidates` are the usable column indices. With --labels
// exactly those (in the given order), else `automatic` ones. Unknown names -> InputError.
std::vector<int> select_label_columns(const CsvTable& table, const std::vector<int>& candidates,
                                      const std::vector<int>& automatic, const DatasetOptions& options) {
    const std::vector<std::string> wanted = requested_labels(options);
    if (wanted.empty()) return automatic;
    std::vector<int> out;
    for (const std::string& name : wanted) {
        const int col = table.column(name);
        if (col < 0 || std::find(candidates.begin(), candidates.end(), col) == candidates.end()) {
            std::vector<std::string> available;
            for (int c : automatic) available.push_back(table.header[c]);
            throw InputError(table.path.string() + ": unknown label '" + name + "' (available: " + join(available) +
                             ")");
        }
        out.push_back(col);
    }
    return out;
}

// Reads the selected label columns of every row; a value other than 0/1 is an error with file:line.
std::vector<float> row_labels(const CsvTable& table, size_t row, const std::vector<int>& columns) {
    std::vector<float> labels;
    labels.reserve(columns.size());
    for (int c : columns) {
        const std::string& v = table.rows[row][c];
        if (!is_01(v)) {
            throw InputError(at_line(table, row) + ": label '" + table.header[c] + "' is not 0/1 ('" + v + "')");
        }
        labels.push_back(v == "1" ? 1.f : 0.f);
    }
    return labels;
}

// A manifest's `slice` value: an integer (its order in the study, any start, gaps allowed).
long parse_slice(const std::string& v, const std::string& where) {
    char* end = nullptr;
    const long value = v.empty() ? 0 : std::strtol(v.c_str(), &end, 10);
    if (v.empty() || end == nullptr || *end != '\0') {
        throw InputError(where + ": \"slice\" is not an integer ('" + v + "')");
    }
    return value;
}

int group_column(const CsvTable& table) {
    const int patient = table.column("patient");
    return patient >= 0 ? patient : table.column("study");
}

void require_rows(const CsvTable& table) {
    if (table.rows.empty()) throw InputError(table.path.string() + ": no data rows (only a header)");
}

// Keeps ids unique: remembers the line of each; a repeat is an error naming both lines.
class IdRegistry {
public:
    void add(const std::string& id, const std::string& where, int line) {
        auto [it, inserted] = lines_.emplace(id, line);
        if (!inserted) {
            throw InputError(where + ": duplicate id '" + id + "' (first on line " + std::to_string(it->second) + ")");
        }
    }

private:
    std::unordered_map<std::string, int> lines_;
};

Dataset open_manifest(const fs::path& root, const fs::path& file, const DatasetOptions& options) {
    const CsvTable table = read_csv(file);
    const int path_col = table.column("path");
    if (path_col < 0) {
        throw InputError(file.string() + ":1: missing column 'path' (columns: " + join(table.header) + ")");
    }
    require_rows(table);
    const int group_col = group_column(table);
    const int mask_col = table.column("mask");
    const int study_col = table.column("study"), slice_col = table.column("slice");
    std::vector<double> slice_keys;

    static const std::set<std::string> reserved{"path", "patient", "study", "id", "mask", "slice"};
    std::vector<int> candidates, automatic;
    for (size_t c = 0; c < table.header.size(); ++c) {
        if (reserved.count(to_lower(table.header[c]))) continue;
        candidates.push_back(static_cast<int>(c));
        bool all01 = true;
        for (const auto& row : table.rows) all01 = all01 && is_01(row[c]);
        if (all01) automatic.push_back(static_cast<int>(c));
    }
    const std::vector<int> columns = select_label_columns(table, candidates, automatic, options);
    if (columns.empty()) {
        throw InputError(file.string() + ": no label column with only 0/1 values (columns: " + join(table.header) +
                         ")");
    }

    Dataset ds;
    ds.root = root;
    ds.form = DatasetForm::Manifest;
    for (int c : columns) ds.label_names.push_back(table.header[c]);
    IdRegistry ids;
    for (size_t r = 0; r < table.rows.size(); ++r) {
        const auto& row = table.rows[r];
        const std::string where = at_line(table, r);
        if (row[path_col].empty()) throw InputError(where + ": empty path");
        DatasetItem item;
        item.id = row[path_col];
        item.path = root / row[path_col];
        item.line = table.line_numbers[r];
        item.labels = row_labels(table, r, columns);
        item.patient = group_col >= 0 && !row[group_col].empty() ? row[group_col] : item.id;
        if (slice_col >= 0) {
            item.study = study_col >= 0 && !row[study_col].empty() ? row[study_col] : item.patient;
            slice_keys.push_back(static_cast<double>(parse_slice(row[slice_col], where)));
        }
        if (!is_file(item.path)) {
            throw InputError(where + ": image '" + row[path_col] + "' not found (" + item.path.string() + ")");
        }
        if (mask_col >= 0 && !row[mask_col].empty()) {
            item.mask = root / row[mask_col];
            if (!is_file(item.mask)) {
                throw InputError(where + ": mask '" + row[mask_col] + "' not found (" + item.mask.string() + ")");
            }
        }
        ids.add(fs::path(item.id).lexically_normal().generic_string(), where, item.line);
        ds.items.push_back(std::move(item));
    }
    if (slice_col >= 0) {
        data_detail::order_slices(ds, slice_keys, true, [&](size_t i) { return at_line(table, i); });
    }
    return ds;
}

// Finds <id>.<ext> in the folder (extensions in either case, then the bare name).
class ImageFinder {
public:
    explicit ImageFinder(const fs::path& root) : root_(root) {
        for (const auto& entry : fs::directory_iterator(root)) {
            std::error_code ec;
            if (entry.is_regular_file(ec)) names_.insert(entry.path().filename().string());
        }
    }

    std::optional<fs::path> find(const std::string& id) const {
        std::vector<std::string> candidates;
        for (const char* ext : kImageExtensions) candidates.push_back(id + "." + ext);
        for (const char* ext : kImageExtensions) {
            std::string upper = ext;
            std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char ch) {
                return static_cast<char>(std::toupper(ch));
            });
            candidates.push_back(id + "." + upper);
        }
        candidates.push_back(id);
        for (const std::string& name : candidates) {
            if (names_.count(name)) return root_ / name;
        }
        // Ids with a folder part ("scan1/000") are not in the listing of the top folder.
        if (id.find('/') != std::string::npos) {
            for (const std::string& name : candidates) {
                if (is_file(root_ / name)) return root_ / name;
            }
        }
        return std::nullopt;
    }

private:
    fs::path root_;
    std::unordered_set<std::string> names_;
};

Dataset open_labels_csv(const fs::path& root, const fs::path& file, const DatasetOptions& options) {
    const CsvTable table = read_csv(file);
    require_rows(table);
    const int group_col = group_column(table);
    std::vector<int> candidates;
    for (size_t c = 1; c < table.header.size(); ++c) {
        if (static_cast<int>(c) != group_col) candidates.push_back(static_cast<int>(c));
    }
    if (candidates.empty()) {
        throw InputError(file.string() + ":1: no label columns (the first column is the id, the others labels)");
    }
    const std::vector<int> columns = select_label_columns(table, candidates, candidates, options);

    Dataset ds;
    ds.root = root;
    ds.form = DatasetForm::LabelsCsv;
    for (int c : columns) ds.label_names.push_back(table.header[c]);
    const ImageFinder finder(root);
    IdRegistry ids;
    for (size_t r = 0; r < table.rows.size(); ++r) {
        const auto& row = table.rows[r];
        const std::string where = at_line(table, r);
        DatasetItem item;
        item.id = row[0];  // kept as written: "000" is not "0"
        if (item.id.empty()) throw InputError(where + ": empty id");
        item.line = table.line_numbers[r];
        item.labels = row_labels(table, r, columns);
        item.patient = group_col >= 0 && !row[group_col].empty() ? row[group_col] : item.id;
        std::optional<fs::path> image = finder.find(item.id);
        if (!image) {
            throw InputError(where + ": no image for id '" + item.id + "' (looked for " + item.id +
                             ".{png,jpg,jpeg,bmp,tif,tiff,dcm} and " + item.id + " in " + root.string() + ")");
        }
        item.path = *image;
        ids.add(item.id, where, item.line);
        ds.items.push_back(std::move(item));
    }
    return ds;
}

Dataset open_class_folders(const fs::path& root, const DatasetOptions& options) {
    // Class folders, sorted by name; each holds images directly or in per-patient subfolders.
    std::map<std::string, std::vector<fs::path>> classes;
    for (const auto& entry : fs::directory_iterator(root)) {
        std::error_code ec;
        if (!entry.is_directory(ec) || is_hidden(entry.path())) continue;
        std::vector<fs::path> files;
        for (auto it = fs::recursive_directory_iterator(entry.path()); it != fs::recursive_directory_iterator();
             ++it) {
            if (is_hidden(it->path())) {
                if (it->is_directory(ec)) it.disable_recursion_pending();
                continue;
            }
            if (it->is_directory(ec) && is_case_folder(it->path(), options.sequences)) {
                files.push_back(it->path());
                it.disable_recursion_pending();
                continue;
            }
            if (it->is_regular_file(ec) && is_image_file(it->path())) files.push_back(it->path());
        }
        const std::string name = entry.path().filename().string();
        if (files.empty()) {
            logger().warn("{}: folder '{}' holds no images; not used as a class", root.string(), name);
            continue;
        }
        std::sort(files.begin(), files.end());
        classes.emplace(name, std::move(files));
    }
    if (classes.empty()) {
        throw InputError(root.string() + ": no manifest.csv, labels.csv or class subfolders with images");
    }

    std::vector<std::string> names;
    for (const auto& [name, files] : classes) names.push_back(name);
    const std::vector<std::string> wanted = requested_labels(options);
    if (!wanted.empty()) {
        std::vector<std::string> selected;
        for (const std::string& w : wanted) {
            auto it = std::find_if(names.begin(), names.end(), [&](const std::string& n) {
                return to_lower(n) == to_lower(w);
            });
            if (it == names.end()) {
                throw InputError(root.string() + ": unknown label '" + w + "' (available classes: " + join(names) +
                                 ")");
            }
            selected.push_back(*it);
        }
        std::sort(selected.begin(), selected.end());
        names = selected;
    }

    Dataset ds;
    ds.root = root;
    ds.form = DatasetForm::ClassFolders;
    ds.multiclass = true;
    ds.label_names = names;
    std::unordered_map<std::string, fs::path> seen;
    std::error_code ec;
    for (size_t k = 0; k < names.size(); ++k) {
        const fs::path class_dir = root / names[k];
        for (const fs::path& file : classes.at(names[k])) {
            DatasetItem item;
            item.path = file;
            const fs::path rel = file.lexically_relative(class_dir);
            const fs::path parent = rel.parent_path();
            const std::string stem = fs::is_directory(file, ec) ? file.filename().string() : file.stem().string();
            item.id = parent.empty() ? stem : (parent / stem).generic_string();
            item.patient = parent.empty() ? item.id : rel.begin()->string();
            item.labels.assign(names.size(), 0.f);
            item.labels[k] = 1.f;
            item.class_index = static_cast<int>(k);
            auto [it, inserted] = seen.emplace(item.id, file);
            if (!inserted) {
                throw InputError(root.string() + ": duplicate id '" + item.id + "' (" + it->second.string() + " and " +
                                 file.string() + ")");
            }
            ds.items.push_back(std::move(item));
        }
    }
    return ds;
}

}  // namespace

Dataset open_dataset(const fs::path& root, const DatasetOptions& options) {
    std::error_code ec;
    if (!fs::exists(root, ec)) throw InputError(root.string() + ": no such folder");
    if (!fs::is_directory(root, ec)) throw InputError(root.string() + ": not a folder");
    if (fs::is_empty(root, ec)) throw InputError(root.string() + ": empty folder");

    Dataset ds;
    if (is_file(root / "manifest.csv")) {
        ds = open_manifest(root, root / "manifest.csv", options);
    } else if (is_file(root / "labels.csv")) {
        ds = open_labels_csv(root, root / "labels.csv", options);
    } else if (const auto rsna = data_detail::find_rsna_csv(root)) {
        ds = data_detail::open_rsna(root, *rsna, options);
    } else {
        ds = open_class_folders(root, options);
    }
    if (ds.items.empty()) throw InputError(root.string() + ": no images");
    logger().debug("{}: {} form, {} images, {} patients, labels: {}", root.string(), to_string(ds.form), ds.size(),
                   ds.patient_count(), join(ds.label_names));
    return ds;
}

std::vector<std::vector<size_t>> Dataset::studies() const {
    std::vector<std::vector<size_t>> out;
    if (!ordered) return out;
    std::unordered_map<std::string, size_t> index;
    for (size_t i = 0; i < items.size(); ++i) {
        auto [it, inserted] = index.emplace(items[i].study, out.size());
        if (inserted) out.emplace_back();
        out[it->second].push_back(i);
    }
    for (auto& study : out) {
        std::sort(study.begin(), study.end(), [&](size_t a, size_t b) { return items[a].slice < items[b].slice; });
    }
    return out;
}

namespace data_detail {

void order_slices(Dataset& ds, const std::vector<double>& keys, bool strict,
                  const std::function<std::string(size_t)>& where) {
    std::unordered_map<std::string, std::vector<size_t>> by_study;
    for (size_t i = 0; i < ds.items.size(); ++i) by_study[ds.items[i].study].push_back(i);
    size_t ties = 0;
    for (auto& [study, members] : by_study) {
        std::stable_sort(members.begin(), members.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
        for (size_t k = 0; k < members.size(); ++k) {
            if (k > 0 && keys[members[k]] == keys[members[k - 1]]) {
                if (strict) {
                    throw InputError(where(members[k]) + ": slice " + fmt::format("{:g}", keys[members[k]]) +
                                     " of study '" + study + "' is also on " + where(members[k - 1]));
                }
                ++ties;
            }
            ds.items[members[k]].slice = static_cast<int>(k);
        }
    }
    if (ties > 0) logger().warn("{}: {} slices share a position with another slice of their study", ds.root.string(), ties);
    ds.ordered = true;
}

}  // namespace data_detail

}  // namespace hemoscan

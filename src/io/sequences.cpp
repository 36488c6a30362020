// Multi-sequence MR cases (io/sequences.hpp).
#include "hemoscan/io/sequences.hpp"

#include <opencv2/imgproc.hpp>
#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <functional>
#include <map>

#include "hemoscan/error.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

// What a case folder holds: files by stem, DICOM series by folder name and description.
struct Entry {
    std::string key;          // file stem or series folder name
    std::string description;  // DICOM SeriesDescription
    std::function<Volume()> load;
    bool eight_bit = false;
};

std::string alnum(const std::string& s) {
    std::string r;
    for (char c : to_lower(s)) {
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) r += c;
    }
    return r;
}

std::vector<std::string> words(const std::string& s) {
    std::vector<std::string> out;
    std::string w;
    for (char c : to_lower(s) + " ") {
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            w += c;
        } else if (!w.empty()) {
            out.push_back(w);
            w.clear();
        }
    }
    return out;
}

// 0 = the entry is sequence `name` by its file/folder name or exact description; 1 + extra words = its
// description holds every word of the name; -1 = not it.
int match_score(const Entry& e, const std::string& name) {
    const std::string key = to_lower(e.key), n = to_lower(name);
    if (key == n || ends_with(key, "_" + n) || alnum(key) == alnum(n)) return 0;
    if (!e.description.empty() && alnum(e.description) == alnum(n)) return 0;
    if (e.description.empty()) return -1;
    const auto have = words(e.description), want = words(name);
    for (const auto& w : want) {  // a word, or the start of one: "mag" in "magnitude"
        if (std::none_of(have.begin(), have.end(), [&w](const std::string& h) { return h.rfind(w, 0) == 0; })) return -1;
    }
    return 1 + static_cast<int>(have.size() - want.size());
}

// Entries of a list of files and folders; keys[i] (when given) names files[i] instead of its own name.
std::vector<Entry> entries_of(const std::vector<fs::path>& files, const std::vector<std::string>& keys,
                              ModalityPolicy policy) {
    std::error_code ec;
    std::vector<Entry> out;
    std::vector<fs::path> loose_dicoms, subfolders;
    for (size_t i = 0; i < files.size(); ++i) {
        const fs::path& p = files[i];
        const fs::path shown = i < keys.size() ? fs::path(keys[i]) : p;
        if (fs::is_directory(p, ec)) {
            subfolders.push_back(p);
        } else if (is_nifti_path(shown)) {
            out.push_back({sequence_stem(shown), "", [p] { return read_nifti(p); }});
        } else if (is_image_2d_path(shown)) {
            out.push_back({sequence_stem(shown), "", [p, policy] { return slice_volume(load_image(p, policy)); }, true});
        } else if (is_dicom_file(p)) {
            loose_dicoms.push_back(p);
        }
    }
    auto add_series = [&out](std::vector<Volume> series, const std::string& key) {
        for (auto& v : series) {
            Entry e;
            e.key = series.size() == 1 ? key : "";
            e.description = v.slice_meta.empty() ? "" : v.slice_meta.front().series_description;
            auto shared = std::make_shared<Volume>(std::move(v));
            e.load = [shared] { return *shared; };
            out.push_back(std::move(e));
        }
    };
    if (!loose_dicoms.empty()) add_series(read_dicom_series(loose_dicoms, policy), "");
    for (const fs::path& sub : subfolders) add_series(read_dicom_series({sub}, policy), sub.filename().string());
    return out;
}

std::vector<Entry> list_entries(const fs::path& folder, ModalityPolicy policy) {
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) throw InputError(folder.string() + ": not a folder of MR sequences");
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(folder)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return entries_of(files, {}, policy);
}

Volume assemble(const std::string& where, const std::vector<Entry>& entries, const std::vector<std::string>& names);

std::string offered(const std::vector<Entry>& entries) {
    std::string names;
    for (const auto& e : entries) names += (names.empty() ? "" : ", ") + (!e.key.empty() ? e.key : "'" + e.description + "'");
    return names.empty() ? std::string("nothing readable") : names;
}

}  // namespace

const std::vector<std::string>& known_sequence_names() {
    static const std::vector<std::string> names{"t1", "t2", "flair", "swi_mag", "swi_phase"};
    return names;
}

std::string sequence_stem(const fs::path& p) {
    std::string name = p.filename().string();
    for (const char* ext : {".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm"}) {
        if (ends_with(to_lower(name), ext)) return name.substr(0, name.size() - std::string(ext).size());
    }
    return name;  // a folder (a DICOM series named by its folder) or another file: the whole name
}

std::vector<std::string> case_sequences(const fs::path& folder) {
    std::vector<std::string> names;
    for (const Entry& e : list_entries(folder, ModalityPolicy::Any)) {
        const std::string n = !e.key.empty() ? to_lower(e.key) : alnum(e.description);
        if (!n.empty() && std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
    const std::vector<std::string>& known = known_sequence_names();
    auto rank = [&known](const std::string& n) {
        const auto it = std::find(known.begin(), known.end(), n);
        return it == known.end() ? known.size() : static_cast<size_t>(it - known.begin());
    };
    std::sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
        return rank(a) != rank(b) ? rank(a) < rank(b) : a < b;
    });
    return names;
}

bool is_sequence_case(const fs::path& folder, const std::vector<std::string>& names) {
    std::error_code ec;
    if (names.empty() || !fs::is_directory(folder, ec)) return false;
    for (const auto& e : fs::directory_iterator(folder, ec)) {
        Entry probe{sequence_stem(e.path()), "", {}};
        if (e.is_directory(ec) && match_score(probe, names.front()) == 0) return true;
        if (e.is_regular_file(ec) && (match_score(probe, names.front()) == 0 || is_dicom_file(e.path()))) return true;
    }
    return false;
}

Volume read_sequence_case(const fs::path& folder, const std::vector<std::string>& names, ModalityPolicy policy) {
    if (names.empty()) throw UsageError("read_sequence_case: no sequence named");
    return assemble(folder.string(), list_entries(folder, policy), names);
}

Volume read_sequence_files(const std::vector<fs::path>& files, const std::vector<std::string>& keys,
                           const std::vector<std::string>& names, ModalityPolicy policy, const std::string& where) {
    if (names.empty()) throw UsageError("read_sequence_files: no sequence named");
    return assemble(where, entries_of(files, keys, policy), names);
}

namespace {

Volume assemble(const std::string& where, const std::vector<Entry>& entries, const std::vector<std::string>& names) {
    std::vector<Volume> volumes;
    bool eight_bit = true;
    for (const std::string& name : names) {
        int best = -1;
        std::vector<size_t> found;
        for (size_t i = 0; i < entries.size(); ++i) {
            const int s = match_score(entries[i], name);
            if (s < 0 || (best >= 0 && s > best)) continue;
            if (best < 0 || s < best) found.clear(), best = s;
            found.push_back(i);
        }
        if (found.empty()) throw InputError(where + ": no MR sequence '" + name + "' (the folder holds " + offered(entries) + ")");
        if (found.size() > 1) throw InputError(where + ": sequence '" + name + "' matches several entries (" + offered(entries) + ")");
        Volume v = entries[found.front()].load();
        fill_slice_meta(v);
        eight_bit = eight_bit && entries[found.front()].eight_bit;
        if (!volumes.empty() && v.depth() != volumes.front().depth()) {
            throw InputError(fmt::format("{}: sequence '{}' has {} slices, '{}' {}", where, name, v.depth(), names.front(),
                                         volumes.front().depth()));
        }
        volumes.push_back(std::move(v));
    }
    Volume out;
    out.geometry = volumes.front().geometry;
    for (size_t s = 0; s < volumes.size(); ++s) {
        const cv::Size size = volumes.front().slices.front().size(), other = volumes[s].slices.front().size();
        if (other != size) {
            out.warnings.push_back(fmt::format("sequence '{}' resampled from {}x{} to {}x{}", names[s], other.width,
                                               other.height, size.width, size.height));
            logger().warn("{}: {}", where, out.warnings.back());
        }
        for (const auto& w : volumes[s].warnings) out.warnings.push_back(names[s] + ": " + w);
    }
    for (int k = 0; k < volumes.front().depth(); ++k) {
        std::vector<cv::Mat> channels;
        ImageMeta meta = volumes.front().slice_meta[static_cast<size_t>(k)];
        for (const Volume& v : volumes) {
            cv::Mat c;
            v.slices[static_cast<size_t>(k)].convertTo(c, CV_32F);
            if (c.channels() > 1) cv::cvtColor(c, c, c.channels() == 4 ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGR2GRAY);
            if (c.size() != volumes.front().slices.front().size()) {
                cv::resize(c, c, volumes.front().slices.front().size(), 0, 0, cv::INTER_LINEAR);
            }
            channels.push_back(c);
            const ImageMeta& m = v.slice_meta[static_cast<size_t>(k)];
            if (m.modality == "MR") meta.modality = "MR";
            meta.is_hu = meta.is_hu || m.is_hu;
        }
        cv::Mat merged;
        cv::merge(channels, merged);
        meta.sequences = names;
        meta.already_windowed = eight_bit;
        if (volumes.front().depth() == 1) meta.path = where;
        out.slices.push_back(merged);
        out.slice_meta.push_back(meta);
    }
    return out;
}

}  // namespace

DicomSlice read_sequence_slice(const fs::path& folder, const std::vector<std::string>& names, ModalityPolicy policy) {
    Volume v = read_sequence_case(folder, names, policy);
    if (v.depth() != 1) {
        throw InputError(fmt::format("{}: a case of {} slices where one image per sequence is expected", folder.string(),
                                     v.depth()));
    }
    return DicomSlice{v.slices.front(), v.slice_meta.front()};
}

}  // namespace hemoscan

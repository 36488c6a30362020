// Segmentation datasets: nnU-Net folders (dataset.json, imagesTr/, labelsTr/) and manifests of image/mask
// pairs. Opening checks the files exist and the label table makes sense; loading a case checks that image
// and mask agree (size, spacing, origin, direction) and that every label value is a known class.
#include "hemoscan/data/seg_dataset.hpp"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

// Label table {name: value} -> names indexed by value. Values must be 0..K-1 without gaps, 0 first.
std::vector<std::string> class_table(const std::map<int, std::string>& by_value, const std::string& file) {
    if (by_value.empty()) throw InputError(file + ": no labels");
    if (by_value.begin()->first != 0) throw InputError(file + ": no background label (value 0)");
    std::vector<std::string> names;
    for (const auto& [value, name] : by_value) {
        if (value != static_cast<int>(names.size())) {
            throw InputError(file + ": label values must be 0..K-1 without gaps (value " +
                             std::to_string(names.size()) + " is missing)");
        }
        names.push_back(name);
    }
    if (names.size() < 2) throw InputError(file + ": only a background label; segmentation needs at least one class");
    return names;
}

// {"background": 0, "bleed": 1} (nnU-Net v2, labels.json) or {"0": "background", "1": "bleed"} (nnU-Net v1).
std::vector<std::string> parse_labels(const nlohmann::json& j, const std::string& file) {
    if (!j.is_object()) throw InputError(file + ": \"labels\" must be an object {name: value}");
    std::map<int, std::string> by_value;
    for (const auto& [key, value] : j.items()) {
        int v;
        std::string name;
        if (value.is_number_integer()) {
            v = value.get<int>();
            name = key;
        } else if (value.is_string()) {
            try {
                size_t used = 0;
                v = std::stoi(key, &used);
                if (used != key.size()) throw std::invalid_argument(key);
            } catch (const std::exception&) {
                throw InputError(file + ": label '" + key + "' must map to an integer value");
            }
            name = value.get<std::string>();
        } else if (value.is_array()) {
            throw InputError(file + ": label '" + key + "' is a region (list of values); region-based labels are "
                             "not supported");
        } else {
            throw InputError(file + ": label '" + key + "' must map to an integer value");
        }
        if (v < 0 || v > 255) throw InputError(file + ": label '" + name + "' has value " + std::to_string(v) + " (0..255)");
        if (!by_value.emplace(v, name).second) {
            throw InputError(file + ": value " + std::to_string(v) + " is used by two labels ('" + by_value[v] +
                             "' and '" + name + "')");
        }
    }
    return class_table(by_value, file);
}

std::vector<int> bleed_classes_of(const std::vector<std::string>& names) {
    std::vector<int> out;
    for (size_t v = 1; v < names.size(); ++v) {
        if (to_lower(names[v]).find("calcif") == std::string::npos) out.push_back(static_cast<int>(v));
    }
    return out;
}

nlohmann::json parse_json_file(const fs::path& file) {
    try {
        return nlohmann::json::parse(read_file(file));
    } catch (const nlohmann::json::exception& e) {
        throw InputError(file.string() + ": not valid JSON (" + e.what() + ")");
    }
}

SegDataset open_nnunet(const fs::path& root) {
    const fs::path file = root / "dataset.json";
    const std::string fname = file.string();
    const nlohmann::json j = parse_json_file(file);
    if (!j.is_object()) throw InputError(fname + ": expected a JSON object");
    SegDataset ds;
    ds.root = root;
    ds.form = "nnunet";

    const char* channel_key = j.contains("channel_names") ? "channel_names" : "modality";  // v2 : v1
    if (!j.contains(channel_key) || !j[channel_key].is_object() || j[channel_key].empty()) {
        throw InputError(fname + ": no \"channel_names\" object (e.g. {\"0\": \"CT\"})");
    }
    const auto& channels = j[channel_key];
    for (size_t c = 0; c < channels.size(); ++c) {
        const std::string key = std::to_string(c);
        if (!channels.contains(key) || !channels[key].is_string()) {
            throw InputError(fname + ": \"channel_names\" must have keys \"0\"..\"" + std::to_string(channels.size() - 1) +
                             "\" with names");
        }
        ds.channel_names.push_back(channels[key].get<std::string>());
    }
    if (ds.channel_names.size() != 1) {
        throw InputError(fname + ": " + std::to_string(ds.channel_names.size()) +
                         " channels; hemoscan segments one-channel (CT) data");
    }
    if (!j.contains("labels")) throw InputError(fname + ": no \"labels\" object (e.g. {\"background\": 0, \"bleed\": 1})");
    ds.class_names = parse_labels(j["labels"], fname);
    ds.bleed_classes = bleed_classes_of(ds.class_names);

    std::string ending = ".nii.gz";
    if (j.contains("file_ending")) {
        if (!j["file_ending"].is_string()) throw InputError(fname + ": \"file_ending\" must be a string");
        ending = j["file_ending"].get<std::string>();
    }
    if (ending != ".nii.gz" && ending != ".nii") {
        throw InputError(fname + ": file_ending '" + ending + "' is not supported (.nii.gz or .nii)");
    }

    const fs::path images = root / "imagesTr", labels = root / "labelsTr";
    if (!fs::is_directory(images)) throw InputError(images.string() + ": no such folder (nnU-Net imagesTr/)");
    // Case ids from the channel files <case>_<XXXX><ending>.
    std::map<std::string, std::vector<fs::path>> cases;
    for (const auto& entry : fs::directory_iterator(images)) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || name[0] == '.' || !ends_with(name, ending)) continue;
        const std::string stem = name.substr(0, name.size() - ending.size());
        const size_t us = stem.rfind('_');
        if (us == std::string::npos || stem.size() - us != 5 ||
            !std::all_of(stem.begin() + static_cast<long>(us) + 1, stem.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
            throw InputError(entry.path().string() + ": not named <case>_<XXXX>" + ending + " (nnU-Net channel file)");
        }
        const int channel = std::stoi(stem.substr(us + 1));
        auto& files = cases[stem.substr(0, us)];
        if (static_cast<int>(files.size()) <= channel) files.resize(static_cast<size_t>(channel) + 1);
        files[static_cast<size_t>(channel)] = entry.path();
    }
    if (cases.empty()) throw InputError(images.string() + ": no cases (files <case>_0000" + ending + ")");
    for (auto& [id, files] : cases) {
        for (size_t c = 0; c < ds.channel_names.size(); ++c) {
            if (c >= files.size() || files[c].empty()) {
                char suffix[32];
                std::snprintf(suffix, sizeof suffix, "_%04zu", c);
                throw InputError((images / (id + suffix + ending)).string() + ": missing (channel " + std::to_string(c) +
                                 " of case " + id + ")");
            }
        }
        if (files.size() > ds.channel_names.size()) {
            throw InputError(files.back().string() + ": channel " + std::to_string(files.size() - 1) + " but " + fname +
                             " names " + std::to_string(ds.channel_names.size()));
        }
        SegCase c;
        c.id = id;
        c.patient = id;
        c.images = files;
        c.mask = labels / (id + ending);
        if (!fs::is_regular_file(c.mask)) {
            throw InputError(c.mask.string() + ": label file missing for case " + id + " (" + files[0].string() + ")");
        }
        ds.cases.push_back(std::move(c));
    }
    if (j.contains("numTraining") && j["numTraining"].is_number_integer() &&
        j["numTraining"].get<size_t>() != ds.cases.size()) {
        logger().warn("{}: numTraining is {} but imagesTr holds {} cases", fname, j["numTraining"].get<size_t>(),
                      ds.cases.size());
    }
    return ds;
}

// The largest label value of a mask file (to name classes when no labels.json is given).
int max_label(const fs::path& mask) {
    double hi = 0;
    if (is_nifti_path(mask)) {
        for (const cv::Mat& s : read_nifti_labels(mask).slices) {
            double lo, h;
            cv::minMaxLoc(s, &lo, &h);
            hi = std::max(hi, h);
        }
    } else {
        cv::Mat m = read_image_2d_pixels(mask);  // checked against the read limits before decoding
        if (m.channels() > 1) cv::extractChannel(m, m, 0);
        double lo;
        cv::minMaxLoc(m, &lo, &hi);
    }
    return static_cast<int>(hi);
}

SegDataset open_manifest(const fs::path& root) {
    const fs::path file = root / "manifest.csv";
    const CsvTable t = read_csv(file);
    const int path_col = t.column("path"), mask_col = t.column("mask");
    if (path_col < 0) throw InputError(file.string() + ": no `path` column");
    if (mask_col < 0) throw InputError(file.string() + ": no `mask` column (segmentation needs path,mask pairs)");
    int group_col = t.column("patient");
    if (group_col < 0) group_col = t.column("study");
    SegDataset ds;
    ds.root = root;
    ds.form = "manifest";
    ds.channel_names = {"image"};
    std::set<std::string> seen;
    for (size_t r = 0; r < t.rows.size(); ++r) {
        const auto& row = t.rows[r];
        const std::string at = file.string() + ":" + std::to_string(t.line_numbers[r]);
        const std::string path = row[static_cast<size_t>(path_col)], mask = row[static_cast<size_t>(mask_col)];
        if (path.empty()) throw InputError(at + ": empty path");
        if (mask.empty()) throw InputError(at + ": empty mask for " + path);
        SegCase c;
        c.id = path;
        c.line = t.line_numbers[r];
        c.images = {fs::path(path).is_absolute() ? fs::path(path) : root / path};
        c.mask = fs::path(mask).is_absolute() ? fs::path(mask) : root / mask;
        c.patient = group_col >= 0 && !row[static_cast<size_t>(group_col)].empty() ? row[static_cast<size_t>(group_col)]
                                                                                 : c.id;
        // error_code: a path the file system refuses (a name over 255 bytes) is a missing file too.
        std::error_code ec;
        if (!fs::is_regular_file(c.images[0], ec)) {
            throw InputError(at + ": image " + c.images[0].string() + " not found");
        }
        if (!fs::is_regular_file(c.mask, ec)) {
            throw InputError(at + ": mask " + c.mask.string() + " not found (for " + path + ")");
        }
        if (!seen.insert(path).second) throw InputError(at + ": " + path + " is listed twice");
        ds.cases.push_back(std::move(c));
    }
    if (ds.cases.empty()) throw InputError(file.string() + ": no cases");

    const fs::path labels_file = root / "labels.json";
    if (fs::exists(labels_file)) {
        ds.class_names = parse_labels(parse_json_file(labels_file), labels_file.string());
    } else {
        // No label table: the classes are 0..max over every mask ("class_<v>").
        int hi = 1;
        for (const SegCase& c : ds.cases) hi = std::max(hi, max_label(c.mask));
        ds.class_names.push_back("background");
        for (int v = 1; v <= hi; ++v) ds.class_names.push_back("class_" + std::to_string(v));
    }
    ds.bleed_classes = bleed_classes_of(ds.class_names);
    return ds;
}

std::string vec3(const std::array<double, 3>& v) {
    std::ostringstream s;
    s << "(" << v[0] << ", " << v[1] << ", " << v[2] << ")";
    return s.str();
}

std::string vec9(const std::array<double, 9>& v) {
    std::ostringstream s;
    s << "(";
    for (size_t i = 0; i < 9; ++i) s << (i ? ", " : "") << v[i];
    return s.str() + ")";
}

}  // namespace

SegDataset open_seg_dataset(const fs::path& root) {
    std::error_code ec;
    if (!fs::exists(root, ec)) throw InputError(root.string() + ": no such folder");
    if (!fs::is_directory(root, ec)) throw InputError(root.string() + ": not a folder");
    if (fs::exists(root / "dataset.json")) return open_nnunet(root);
    if (fs::exists(root / "manifest.csv")) return open_manifest(root);
    throw InputError(root.string() + ": neither dataset.json (nnU-Net: imagesTr/, labelsTr/) nor manifest.csv "
                     "(path,mask) found");
}

SegVolume load_seg_case(const SegDataset& ds, size_t index) {
    if (index >= ds.cases.size()) {
        throw UsageError("load_seg_case: case " + std::to_string(index) + " of " + std::to_string(ds.cases.size()));
    }
    const SegCase& c = ds.cases[index];
    const fs::path& image_file = c.images.at(0);
    const std::string where = c.line > 0 ? (ds.root / "manifest.csv").string() + ":" + std::to_string(c.line) + ": " : "";
    SegVolume out;
    out.id = c.id;
    out.patient = c.patient;
    out.image = is_nifti_path(image_file) ? read_nifti(image_file) : slice_volume(load_image(image_file, ModalityPolicy::Any));

    const std::string mname = c.mask.string(), iname = image_file.string();
    const bool mask_has_geometry = is_nifti_path(c.mask);
    if (mask_has_geometry) {
        out.mask = read_nifti_labels(c.mask);
    } else {
        cv::Mat m;
        try {
            m = read_image_2d_pixels(c.mask);  // checked against the read limits before decoding
        } catch (const InputError& e) {
            throw InputError(where + e.what());
        }
        if (m.channels() > 1) cv::extractChannel(m, m, 0);
        if (m.depth() != CV_8U) {
            double lo, hi;
            cv::minMaxLoc(m, &lo, &hi);
            if (lo < 0 || hi > 255) throw InputError(where + mname + ": mask values outside 0..255");
            m.convertTo(m, CV_8U);
        }
        out.mask.slices.push_back(m);
        out.mask.geometry = out.image.geometry;  // a PNG carries no geometry: it is the image's
    }

    const Volume& im = out.image;
    const LabelVolume& mk = out.mask;
    auto dims = [](int cols, int rows, int depth) {
        return std::to_string(cols) + "x" + std::to_string(rows) + "x" + std::to_string(depth);
    };
    if (mk.depth() != im.depth() || mk.slices.front().rows != im.rows() || mk.slices.front().cols != im.cols()) {
        throw InputError(where + mname + ": mask is " + dims(mk.slices.front().cols, mk.slices.front().rows, mk.depth()) +
                         " but its image " + iname + " is " + dims(im.cols(), im.rows(), im.depth()));
    }
    if (mask_has_geometry) {
        const Geometry &a = im.geometry, &b = mk.geometry;
        auto differs = [](const auto& x, const auto& y, double tol) {
            for (size_t i = 0; i < x.size(); ++i) {
                if (std::abs(x[i] - y[i]) > tol) return true;
            }
            return false;
        };
        std::string what;
        if (differs(a.spacing, b.spacing, 1e-3)) {
            what = "spacing differs: image " + vec3(a.spacing) + " mm, mask " + vec3(b.spacing) + " mm";
        } else if (differs(a.origin, b.origin, 1e-3)) {
            what = "origin differs: image " + vec3(a.origin) + " mm, mask " + vec3(b.origin) + " mm";
        } else if (differs(a.direction, b.direction, 1e-4)) {
            what = "direction differs: image " + vec9(a.direction) + ", mask " + vec9(b.direction);
        }
        if (!what.empty()) throw InputError(where + mname + " and its image " + iname + ": geometry mismatch, " + what);
    }
    const int classes = static_cast<int>(ds.class_names.size());
    for (int k = 0; k < mk.depth(); ++k) {
        double lo, hi;
        cv::Point at;
        cv::minMaxLoc(mk.slices[static_cast<size_t>(k)], &lo, &hi, nullptr, &at);
        if (hi >= classes) {
            throw InputError(where + mname + ": label value " + std::to_string(static_cast<int>(hi)) + " at slice " +
                             std::to_string(k) + " (row " + std::to_string(at.y) + ", column " + std::to_string(at.x) +
                             ") outside 0.." + std::to_string(classes - 1) + " (the dataset's classes)");
        }
    }
    return out;
}

}  // namespace hemoscan

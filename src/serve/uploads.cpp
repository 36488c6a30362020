#include "serve/uploads.hpp"

#include <cstdio>

#include "hemoscan/error.hpp"
#include "hemoscan/io/archive.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan::serve {

namespace fs = std::filesystem;

namespace {

// The display name of a client file: its last path component, sanitised (a name never becomes a path).
std::string display_name(const std::string& name) {
    std::string base = name;
    const size_t slash = base.find_last_of("/\\");
    if (slash != std::string::npos) base = base.substr(slash + 1);
    return safe_filename(base, 80);
}

class Stager {
public:
    Stager(const fs::path& dir, const UploadLimits& limits) : dir_(dir), limits_(limits) {}

    void add(const std::string& bytes, const std::string& name, const std::string& content_type, bool in_zip) {
        if (++count_ > limits_.max_files) {
            throw RequestError(413, "too many files (at most " + std::to_string(limits_.max_files) + ")");
        }
        const std::string shown = display_name(name);
        if (bytes.empty()) {
            if (in_zip) return;
            throw RequestError(400, "'" + shown + "' is empty");
        }
        const FileType type = sniff_file_type(bytes, name, content_type);
        if (type == FileType::Zip) {
            if (in_zip) {
                out_.warnings.push_back("a zip inside the zip was skipped ('" + shown + "')");
                return;
            }
            add_zip(bytes, shown);
            return;
        }
        if (type == FileType::Unknown) {
            if (in_zip) {
                ++skipped_;  // README, DICOMDIR-less junk, thumbnails...: not part of the series
                return;
            }
            throw RequestError(415, "'" + shown + "' is not a PNG or JPEG image, a DICOM file or a zip of them");
        }
        char file[32];
        std::snprintf(file, sizeof(file), "upload_%04zu%s", ++written_, file_extension(type));
        StagedFile staged{dir_ / file, shown};
        write_file_atomic(staged.path, bytes);
        (type == FileType::Dicom ? out_.dicoms : out_.images).push_back(std::move(staged));
    }

    StagedUpload finish() {
        if (skipped_ > 0) {
            out_.warnings.push_back(std::to_string(skipped_) + " file(s) in the zip skipped (not images)");
        }
        if (out_.images.empty() && out_.dicoms.empty()) throw RequestError(400, "no image or DICOM file in the upload");
        if (!out_.images.empty() && !out_.dicoms.empty()) {
            throw RequestError(400, "the upload mixes PNG/JPEG images with DICOM files: send one kind at a time");
        }
        return std::move(out_);
    }

private:
    void add_zip(const std::string& bytes, const std::string& shown) {
        ZipLimits zl;
        zl.max_entries = limits_.max_files;
        zl.max_unzipped_bytes = limits_.max_unzipped_bytes - unzipped_;  // the budget of the whole upload
        try {
            unzipped_ += for_each_zip_entry(bytes, shown, zl, [&](const std::string& name, const std::string& entry) {
                add(entry, name, "", true);
            });
        } catch (const ZipLimitError& e) {
            throw RequestError(413, e.what());
        } catch (const RequestError&) {
            throw;
        } catch (const InputError& e) {
            throw RequestError(400, e.what());
        }
    }

    fs::path dir_;
    UploadLimits limits_;
    StagedUpload out_;
    size_t count_ = 0, written_ = 0, skipped_ = 0, unzipped_ = 0;
};

}  // namespace

StagedUpload stage_uploads(const std::vector<UploadedFile>& files, const fs::path& dir, const UploadLimits& limits) {
    if (files.empty()) throw RequestError(400, "no file uploaded (send multipart/form-data with a 'file' field)");
    Stager stager(dir, limits);
    for (const auto& f : files) stager.add(read_file(f.bytes), f.name, f.content_type, false);
    StagedUpload out = stager.finish();
    out.display_name = files.size() == 1 ? display_name(files.front().name)
                                         : std::to_string(files.size()) + " files";
    return out;
}

}  // namespace hemoscan::serve

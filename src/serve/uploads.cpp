#include "serve/uploads.hpp"

#include <zip.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan::serve {

namespace fs = std::filesystem;

namespace {

bool starts_with_bytes(const std::string& s, const char* magic, size_t n) {
    return s.size() >= n && std::memcmp(s.data(), magic, n) == 0;
}

// The display name of a client file: its last path component, sanitised (a name never becomes a path).
std::string display_name(const std::string& name) {
    std::string base = name;
    const size_t slash = base.find_last_of("/\\");
    if (slash != std::string::npos) base = base.substr(slash + 1);
    return safe_filename(base, 80);
}

const char* extension(FileType type) {
    switch (type) {
        case FileType::Png: return ".png";
        case FileType::Jpeg: return ".jpg";
        case FileType::Dicom: return ".dcm";
        default: return ".bin";
    }
}

struct ZipCloser {
    void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileCloser {
    void operator()(zip_file_t* f) const { zip_fclose(f); }
};

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
        std::snprintf(file, sizeof(file), "upload_%04zu%s", ++written_, extension(type));
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
        zip_error_t error;
        zip_error_init(&error);
        zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
        if (!source) throw RequestError(400, "'" + shown + "': cannot read the zip archive");
        std::unique_ptr<zip_t, ZipCloser> archive(zip_open_from_source(source, ZIP_RDONLY, &error));
        if (!archive) {
            zip_source_free(source);
            const std::string why = zip_error_strerror(&error);
            zip_error_fini(&error);
            throw RequestError(400, "'" + shown + "' is not a valid zip archive (" + why + ")");
        }
        zip_error_fini(&error);
        const zip_int64_t n = zip_get_num_entries(archive.get(), 0);
        if (n < 0 || static_cast<size_t>(n) > limits_.max_files) {
            throw RequestError(413, "'" + shown + "' has too many entries (at most " +
                                        std::to_string(limits_.max_files) + ")");
        }
        std::string entry;
        for (zip_int64_t i = 0; i < n; ++i) {
            zip_stat_t st;
            zip_stat_init(&st);
            if (zip_stat_index(archive.get(), static_cast<zip_uint64_t>(i), 0, &st) != 0 || !st.name) {
                throw RequestError(400, "'" + shown + "': unreadable zip entry " + std::to_string(i));
            }
            const std::string name = st.name;
            // The last component whichever separator the archiver used ("a\\b.dcm" from Windows tools).
            const size_t slash = name.find_last_of("/\\");
            const std::string base = slash == std::string::npos ? name : name.substr(slash + 1);
            // Folders, macOS resource forks, hidden files and the DICOMDIR index hold no images.
            if (name.empty() || name.back() == '/' || name.rfind("__MACOSX/", 0) == 0 || base.empty() ||
                base[0] == '.' || to_lower(base) == "dicomdir") {
                continue;
            }
            // The sizes in the archive's directory are the client's word: count the bytes actually read.
            if ((st.valid & ZIP_STAT_SIZE) && st.size > limits_.max_unzipped_bytes - unzipped_) {
                throw too_big(shown);
            }
            std::unique_ptr<zip_file_t, ZipFileCloser> file(
                zip_fopen_index(archive.get(), static_cast<zip_uint64_t>(i), 0));
            if (!file) {
                throw RequestError(400, "'" + shown + "': cannot open entry '" + display_name(name) + "' (" +
                                            zip_strerror(archive.get()) + ")");
            }
            entry.clear();
            char buffer[1 << 16];
            for (;;) {
                const zip_int64_t got = zip_fread(file.get(), buffer, sizeof(buffer));
                if (got < 0) {
                    throw RequestError(400, "'" + shown + "': entry '" + display_name(name) + "' is corrupt (" +
                                                zip_file_strerror(file.get()) + ")");
                }
                if (got == 0) break;
                unzipped_ += static_cast<size_t>(got);
                if (unzipped_ > limits_.max_unzipped_bytes) throw too_big(shown);
                entry.append(buffer, static_cast<size_t>(got));
            }
            add(entry, name, "", true);
        }
    }

    RequestError too_big(const std::string& shown) const {
        return RequestError(413, "'" + shown + "' expands to more than " +
                                     std::to_string(limits_.max_unzipped_bytes >> 20) + " MB");
    }

    fs::path dir_;
    UploadLimits limits_;
    StagedUpload out_;
    size_t count_ = 0, written_ = 0, skipped_ = 0, unzipped_ = 0;
};

}  // namespace

FileType sniff_file_type(const std::string& bytes, const std::string& name, const std::string& content_type) {
    if (starts_with_bytes(bytes, "\x89PNG\r\n\x1a\n", 8)) return FileType::Png;
    if (starts_with_bytes(bytes, "\xff\xd8\xff", 3)) return FileType::Jpeg;
    if (starts_with_bytes(bytes, "PK\x03\x04", 4) || starts_with_bytes(bytes, "PK\x05\x06", 4)) return FileType::Zip;
    if (bytes.size() >= 132 && std::memcmp(bytes.data() + 128, "DICM", 4) == 0) return FileType::Dicom;
    // Old DICOM files without preamble start with a little-endian tag of group 0002 or 0008.
    if (bytes.size() >= 8) {
        const unsigned group = static_cast<unsigned char>(bytes[0]) | (static_cast<unsigned char>(bytes[1]) << 8);
        if (group == 0x0002 || group == 0x0008) return FileType::Dicom;
    }
    const std::string lower = to_lower(name);
    if (ends_with(lower, ".dcm") || ends_with(lower, ".dicom") || to_lower(content_type) == "application/dicom") {
        return FileType::Dicom;
    }
    return FileType::Unknown;
}

StagedUpload stage_uploads(const std::vector<UploadedFile>& files, const fs::path& dir, const UploadLimits& limits) {
    if (files.empty()) throw RequestError(400, "no file uploaded (send multipart/form-data with a 'file' field)");
    Stager stager(dir, limits);
    for (const auto& f : files) stager.add(f.bytes, f.name, f.content_type, false);
    StagedUpload out = stager.finish();
    out.display_name = files.size() == 1 ? display_name(files.front().name)
                                         : std::to_string(files.size()) + " files";
    return out;
}

}  // namespace hemoscan::serve

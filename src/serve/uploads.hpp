#pragma once
// Uploaded files -> files on disk that the library can read. Nothing from the client becomes a
// path: every file is written under a folder the server made, with a name the server chose
// (upload_0001.dcm, ...); the client's file name is kept only, sanitised, for display.
#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "hemoscan/io/archive.hpp"  // sniff_file_type: a broken *.dcm is a 400, not a 415

namespace hemoscan::serve {

// An error answered with an HTTP status and {"error": message}.
class RequestError : public std::runtime_error {
public:
    RequestError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
    int status() const { return status_; }

private:
    int status_;
};

struct UploadedFile {
    std::string name;             // as the client sent it (display only)
    std::string content_type;     // as the client sent it
    std::filesystem::path bytes;  // where the HTTP layer spooled its bytes
};

struct StagedFile {
    std::filesystem::path path;  // under the staging folder, named by the server
    std::string display_name;    // sanitised client name (zip entries: the entry's file name)
};

struct StagedUpload {
    std::vector<StagedFile> images;  // PNG/JPEG, in upload order
    std::vector<StagedFile> dicoms;  // DICOM files, in upload order
    std::vector<std::string> warnings;
    std::string display_name;        // what the history shows: the file name, or "N files"
};

struct UploadLimits {
    size_t max_files = 2000;                  // files plus zip entries
    size_t max_unzipped_bytes = 2048u << 20;  // total uncompressed size of zip entries
};

// Writes the uploads (zip archives expanded, in memory, with the limits enforced while reading)
// into `dir`, one file at a time. Throws RequestError: 400 (no file, empty file, broken zip, images mixed with DICOM),
// 413 (limits), 415 (a file that is neither PNG/JPEG, DICOM nor zip).
StagedUpload stage_uploads(const std::vector<UploadedFile>& files, const std::filesystem::path& dir,
                           const UploadLimits& limits);

}  // namespace hemoscan::serve

#pragma once
// What a file is, by its bytes, and the entries of a zip archive (libzip): the CLI, the server's
// uploads and the analysis pipeline read zips of DICOM series or images through this one reader.
#include <cstddef>
#include <functional>
#include <string>

#include "hemoscan/error.hpp"

namespace hemoscan {

enum class FileType { Png, Jpeg, Dicom, Zip, Unknown };

// By content (magic numbers); a file named *.dcm or sent as application/dicom counts as DICOM even
// without the "DICM" marker, so that a broken one is reported as DICOM rather than as unknown.
FileType sniff_file_type(const std::string& bytes, const std::string& name, const std::string& content_type = "");

// The file extension a staged file of this type gets (".png", ".jpg", ".dcm"; ".bin" otherwise).
const char* file_extension(FileType type);

struct ZipLimits {
    size_t max_entries = 100000;              // entries in the archive's directory
    size_t max_unzipped_bytes = size_t(8) << 30;  // total uncompressed size of the entries read
    // Uncompressed / compressed size, checked once more than `ratio_after` bytes are out: zip bombs expand
    // a thousandfold and more; DICOM series and images deflate tens of times at most (air compresses well).
    double max_ratio = 200;
    size_t ratio_after = size_t(64) << 20;
};

// A zip over its limits (InputError otherwise: a broken archive or entry).
class ZipLimitError : public InputError {
public:
    using InputError::InputError;
};

// Calls `entry(name, bytes)` for each file entry that can hold an image, in archive order: folders,
// macOS resource forks (__MACOSX/), hidden files and DICOMDIR indexes are passed over. The limits are
// enforced while reading (the sizes in the archive's directory are the writer's word). `shown` names
// the archive in messages. Entry names are the archive's: never use them as paths. Returns the
// uncompressed bytes read.
size_t for_each_zip_entry(const std::string& bytes, const std::string& shown, const ZipLimits& limits,
                        const std::function<void(const std::string& name, const std::string& bytes)>& entry);

}  // namespace hemoscan

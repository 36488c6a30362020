#include "hemoscan/io/archive.hpp"

#include <zip.h>

#include <cstring>
#include <memory>

#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace {

bool starts_with_bytes(const std::string& s, const char* magic, size_t n) {
    return s.size() >= n && std::memcmp(s.data(), magic, n) == 0;
}

struct ZipCloser {
    void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileCloser {
    void operator()(zip_file_t* f) const { zip_fclose(f); }
};

std::string last_component(const std::string& name) {
    // Whichever separator the archiver used ("a\\b.dcm" from Windows tools).
    const size_t slash = name.find_last_of("/\\");
    return slash == std::string::npos ? name : name.substr(slash + 1);
}

std::unique_ptr<zip_t, ZipCloser> open_zip(const std::string& bytes, const std::string& shown) {
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
    if (!source) throw InputError("'" + shown + "': cannot read the zip archive");
    std::unique_ptr<zip_t, ZipCloser> archive(zip_open_from_source(source, ZIP_RDONLY, &error));
    if (!archive) {
        zip_source_free(source);
        const std::string why = zip_error_strerror(&error);
        zip_error_fini(&error);
        throw InputError("'" + shown + "' is not a valid zip archive (" + why + ")");
    }
    zip_error_fini(&error);
    return archive;
}

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

const char* file_extension(FileType type) {
    switch (type) {
        case FileType::Png: return ".png";
        case FileType::Jpeg: return ".jpg";
        case FileType::Dicom: return ".dcm";
        default: return ".bin";
    }
}

size_t for_each_zip_entry(const std::string& bytes, const std::string& shown, const ZipLimits& limits,
                        const std::function<void(const std::string& name, const std::string& bytes)>& entry) {
    auto archive = open_zip(bytes, shown);
    const zip_int64_t n = zip_get_num_entries(archive.get(), 0);
    if (n < 0 || static_cast<size_t>(n) > limits.max_entries) {
        throw ZipLimitError("'" + shown + "' has too many entries (at most " + std::to_string(limits.max_entries) +
                            ")");
    }
    const auto too_big = [&] {
        return ZipLimitError("'" + shown + "' expands to more than " +
                             std::to_string(limits.max_unzipped_bytes >> 20) + " MB");
    };
    size_t unzipped = 0;
    std::string data;
    for (zip_int64_t i = 0; i < n; ++i) {
        zip_stat_t st;
        zip_stat_init(&st);
        if (zip_stat_index(archive.get(), static_cast<zip_uint64_t>(i), 0, &st) != 0 || !st.name) {
            throw InputError("'" + shown + "': unreadable zip entry " + std::to_string(i));
        }
        const std::string name = st.name, base = last_component(name);
        if (name.empty() || name.back() == '/' || name.rfind("__MACOSX/", 0) == 0 || base.empty() ||
            base[0] == '.' || to_lower(base) == "dicomdir") {
            continue;
        }
        if ((st.valid & ZIP_STAT_SIZE) && st.size > limits.max_unzipped_bytes - unzipped) throw too_big();
        std::unique_ptr<zip_file_t, ZipFileCloser> file(zip_fopen_index(archive.get(), static_cast<zip_uint64_t>(i), 0));
        const std::string entry_name = safe_filename(base, 80);
        if (!file) {
            throw InputError("'" + shown + "': cannot open entry '" + entry_name + "' (" + zip_strerror(archive.get()) +
                             ")");
        }
        data.clear();
        char buffer[1 << 16];
        for (;;) {
            const zip_int64_t got = zip_fread(file.get(), buffer, sizeof(buffer));
            if (got < 0) {
                throw InputError("'" + shown + "': entry '" + entry_name + "' is corrupt (" +
                                 zip_file_strerror(file.get()) + ")");
            }
            if (got == 0) break;
            unzipped += static_cast<size_t>(got);
            if (unzipped > limits.max_unzipped_bytes) throw too_big();
            if (unzipped > limits.ratio_after &&
                static_cast<double>(unzipped) > limits.max_ratio * static_cast<double>(bytes.size())) {
                throw ZipLimitError("'" + shown + "' expands more than " +
                                    std::to_string(static_cast<long long>(limits.max_ratio)) +
                                    "-fold (a zip bomb?): " + std::to_string(bytes.size()) + " bytes unpack to over " +
                                    std::to_string(unzipped >> 20) + " MB");
            }
            data.append(buffer, static_cast<size_t>(got));
        }
        entry(name, data);
    }
    return unzipped;
}

}  // namespace hemoscan

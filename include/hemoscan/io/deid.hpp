#pragma once
// De-identification of DICOM files: the DICOM PS3.15 Annex E Basic Application Level Confidentiality
// Profile, with the Retain Longitudinal Temporal Information with Modified Dates option (dates shifted
// by a per-patient offset) and consistent UID remapping (the same source UID always maps to the same
// new UID for the same key, so a study's series and references stay linked across files and runs).
// What is and is not done: docs/deid.md.
#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace hemoscan {

struct DeidOptions {
    // Secret that keys the UID mapping, the pseudonymous patient id and the date offsets. The same
    // key gives the same output for the same input (re-runs, files arriving later); without the key
    // the mapping cannot be reversed or recomputed. Empty: UsageError. A short key can be found by
    // trying candidates against known patient ids: use a long random one.
    std::string key;
    int max_date_shift_days = 365;   // offsets are drawn in [-max, -1] days per patient (from the key); 1..36500
    std::string patient_id_prefix = "ANON";  // new PatientID: prefix + 10 hex digits of a keyed hash
};

// What deidentify_file did to one file. Counts are of attributes (data set, nested items and file meta),
// except uids_remapped, which counts UID values.
struct DeidReport {
    std::filesystem::path input, output;
    int removed = 0, emptied = 0, replaced = 0, uids_remapped = 0, dates_shifted = 0;
};

class Deidentifier {
public:
    // UsageError for an empty key, a date shift outside 1..36500 days or an unusable prefix.
    explicit Deidentifier(DeidOptions options);

    // Reads `in`, de-identifies the data set and its file meta information, writes `out` atomically
    // (temporary file, then rename; the folder is created) in the input's transfer syntax. InputError
    // naming `in` for a file that is not DICOM or is a DICOMDIR. The pixel data is kept as is (burned-in
    // text is not detected: BurnedInAnnotation YES is refused with InputError unless `allow_burned_in`).
    // Nothing is written on an error. Thread-safe.
    DeidReport deidentify_file(const std::filesystem::path& in, const std::filesystem::path& out,
                               bool allow_burned_in = false) const;

    // The mapping of one UID (deterministic in key and uid; "2.25." + a decimal 128-bit number).
    std::string map_uid(const std::string& uid) const;
    // The date offset (days, in [-max_date_shift_days, -1]) of a patient id.
    int date_offset_days(const std::string& patient_id) const;
    // The new PatientID (and PatientName) of a patient id: patient_id_prefix + 10 hex digits.
    std::string pseudonym(const std::string& patient_id) const;

private:
    DeidOptions options_;
};

// Called after each file of deidentify_path with the files done and the files to do.
using DeidProgress = std::function<void(size_t done, size_t total)>;

// `hemoscan deid IN OUT`: a file -> a file (OUT an existing folder: the file of that name in it); a
// folder -> the same tree of files under OUT (non-DICOM files and DICOMDIRs skipped with a warning, not
// copied). Returns one report per file written. InputError for a missing IN, a folder without DICOM
// files, or OUT inside IN (or equal to it). The first file that fails stops the run with its error:
// the files written before it are complete, the one that failed is not written.
std::vector<DeidReport> deidentify_path(const std::filesystem::path& in, const std::filesystem::path& out,
                                        const DeidOptions& options, bool allow_burned_in = false,
                                        const DeidProgress& progress = {});

}  // namespace hemoscan

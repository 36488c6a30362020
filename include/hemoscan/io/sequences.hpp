#pragma once
// Multi-sequence MR cases: a folder with one image per sequence (t1.png, sub-01_flair.nii.gz, a DICOM
// series per sequence in subfolders or loose), read as one image or volume whose channels are the
// sequences in the order the model asks for.
//
// Which entry is sequence N: a file whose stem (lower-case, without .png/.nii.gz/...) equals N or ends
// with "_N" (BIDS style); a DICOM series whose folder name does, or whose SeriesDescription, reduced to
// lower-case letters and digits, equals N's; failing those, the one series whose description holds
// every word of N or a word starting with it ("swi_phase" in "SWI Phase filtered", "swi_mag" in "SWI
// magnitude"). None or several: InputError naming what the folder holds.
#include <filesystem>
#include <string>
#include <vector>

#include "hemoscan/io/dicom.hpp"

namespace hemoscan {

// The sequences hemoscan knows by name, in the order case_sequences lists them first: t1, t2, flair,
// swi_mag, swi_phase.
const std::vector<std::string>& known_sequence_names();
// A file's name without its image/volume extension (.nii.gz, .nii, .png, .jpg, .jpeg, .bmp, .tif,
// .tiff, .dcm; the whole name for anything else, folders included), case kept: what a sequence name
// is matched against.
std::string sequence_stem(const std::filesystem::path& path);

// The sequences a case folder offers (file stems, DICOM series folders or descriptions), the known
// ones first (t1, t2, flair, swi_mag, swi_phase), then by name. Empty when it holds no image.
std::vector<std::string> case_sequences(const std::filesystem::path& folder);

// Reads the sequences `names` of the case folder as one volume: slice k holds the sequences' slice k as
// channels (CV_32FC(n)); slice_meta[k].sequences = names. Every sequence must have as many slices;
// in-plane sizes that differ are resampled to the first sequence's (a warning). DICOM series go
// through `policy` (an MR model: MR only). InputError naming the folder and sequence otherwise.
Volume read_sequence_case(const std::filesystem::path& folder, const std::vector<std::string>& names,
                          ModalityPolicy policy);

// Whether `folder` is itself one case: it holds an entry named after the first sequence, or DICOM files.
bool is_sequence_case(const std::filesystem::path& folder, const std::vector<std::string>& names);

// The same for a list of files (an upload): keys[i], when given, is files[i]'s name as its sender gave
// it (matched instead of the file's own name); `where` names the case in messages.
Volume read_sequence_files(const std::vector<std::filesystem::path>& files, const std::vector<std::string>& keys,
                           const std::vector<std::string>& names, ModalityPolicy policy, const std::string& where);

// A case of one slice (2D images, one-slice DICOM/NIfTI) as a DicomSlice with n channels. InputError
// when a sequence has several slices.
DicomSlice read_sequence_slice(const std::filesystem::path& folder, const std::vector<std::string>& names,
                               ModalityPolicy policy);

}  // namespace hemoscan

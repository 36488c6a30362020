#pragma once
// Datasets with masks for segmentation. DATA is a folder in one of two forms:
//  (a) nnU-Net style: dataset.json ("channel_names": {"0": "CT"}, "labels": {"background": 0,
//      "epidural": 1, ...}, "file_ending": ".nii.gz"), imagesTr/<case>_0000.nii.gz (one file per
//      channel) and labelsTr/<case>.nii.gz; optional imagesTs/ labelsTs/ are ignored for training.
//  (b) manifest.csv with columns `path` and `mask` (PNG or NIfTI pairs; optional `patient`/`study`
//      group column). PNG masks hold label values; class names come from an optional
//      `labels.json` ({"background": 0, "bleed": 1}) beside the manifest, else "class_<v>" for
//      v = 1..(largest value found in the masks, at least 1).
// Label values must be 0..K-1 without gaps; one image channel (CT) is supported.
// Free of LibTorch.
#include <filesystem>
#include <string>
#include <vector>

#include "hemoscan/image.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/io/nifti.hpp"

namespace hemoscan {

struct SegCase {
    std::string id;                            // case id (nnU-Net) or manifest path
    std::string patient;                       // group for splits (defaults to id)
    std::vector<std::filesystem::path> images;  // one per channel (nnU-Net), or one
    std::filesystem::path mask;
    int line = 0;                              // manifest line (0 for nnU-Net folders)
};

struct SegDataset {
    std::filesystem::path root;
    std::string form;                       // "nnunet" or "manifest"
    std::vector<std::string> class_names;   // index = label value; [0] = background
    std::vector<std::string> channel_names;
    // Label values counted as "any bleed" (every foreground class but ones named calcification).
    std::vector<int> bleed_classes;
    std::vector<SegCase> cases;
    size_t size() const { return cases.size(); }
};

// Opens DATA (dataset.json first, then manifest.csv with a mask column). InputError naming the file
// (and CSV line) for: missing folder/files, no cases, a case without its label file, bad dataset.json.
SegDataset open_seg_dataset(const std::filesystem::path& root);

// One case in memory: the image volume (HU for CT NIfTI/DICOM; grey values 0..255 with
// slice_meta.already_windowed for 8-bit PNG, as load_image gives) and its label map. Image and mask must have the same size and geometry (spacing, origin,
// direction within 1e-3 mm / 1e-4), else InputError naming both files and what differs. Labels
// outside 0..classes-1 -> InputError with the file.
struct SegVolume {
    Volume image;
    LabelVolume mask;
    std::string id, patient;
};
SegVolume load_seg_case(const SegDataset& dataset, size_t index);


}  // namespace hemoscan

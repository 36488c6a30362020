// CSV and data-set harness: the input as the CSV of a data-set folder, opened in each form that reads a
// CSV (manifest.csv, also as a segmentation data set; labels.csv; an RSNA `ID,Label` CSV), then split as
// training would.
//
// The folder (made once per process) holds what seeds/csv/ refers to: a.png, b.png, c.jpg (one byte: the
// data sets only check that images exist), the masks m.nii.gz and mask.png (2 x 2 label maps, which the
// segmentation data set reads for its classes) and ID_000.dcm .. ID_002.dcm (2 x 2 CT slices of one study,
// 5 mm apart, for the RSNA form, which reads their headers).
#include <cstdint>
#include <filesystem>
#include <fstream>

#include <opencv2/core.hpp>

#include "fuzz_support.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/data/seg_dataset.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/nifti.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

const fs::path& dataset_dir() {
    static const fs::path dir = [] {
        const fs::path root = fuzz::scratch_dir() / "data";
        fs::create_directories(root);
        for (const char* name : {"a.png", "b.png", "c.jpg"}) std::ofstream(root / name).put('x');
        const cv::Mat labels = (cv::Mat_<uchar>(2, 2) << 0, 1, 2, 0);
        write_nifti_labels(root / "m.nii.gz", {labels}, Geometry{});
        write_image_2d(root / "mask.png", labels);
        DicomWriteOptions o;
        o.patient_id = "P1";
        o.study_uid = "1.2.3.4";
        o.series_uid = "1.2.3.4.5";
        for (int k = 0; k < 3; ++k) {
            o.sop_uid = "1.2.3.4.5." + std::to_string(k + 1);
            o.instance_number = k + 1;
            o.position = {0, 0, 5.0 * k};
            write_dicom_ct(root / ("ID_00" + std::to_string(k) + ".dcm"), cv::Mat(2, 2, CV_32F, cv::Scalar(40)), o);
        }
        return root;
    }();
    return dir;
}

void open_and_split(const fs::path& root) {
    const Dataset ds = open_dataset(root);
    (void)ds.fingerprint();
    (void)ds.label_counts();
    (void)ds.studies();
    if (ds.patient_count() >= 3) {  // fewer patients than folds is a usage error, not an input error
        (void)grouped_stratified_folds(ds, 3, 1);
        (void)holdout_split(ds, 0.2, 1);
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::init();
    (void)dataset_dir();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
    const fs::path root = dataset_dir();
    // One name after the other (open_dataset prefers manifest.csv, then labels.csv, then any ID,Label CSV).
    const fs::path manifest = fuzz::write_input("data/manifest.csv", data, size);
    fuzz::expect_clean("manifest.csv", [&] { open_and_split(root); });
    fuzz::expect_clean("segmentation manifest.csv", [&] { (void)open_seg_dataset(root); });
    fs::rename(manifest, root / "labels.csv");
    fuzz::expect_clean("labels.csv", [&] { open_and_split(root); });
    fs::rename(root / "labels.csv", root / "train.csv");
    fuzz::expect_clean("ID,Label csv", [&] { open_and_split(root); });
    fs::remove(root / "train.csv");
    return 0;
}

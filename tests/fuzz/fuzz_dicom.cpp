// DICOM reader harness: the input as a .dcm file through every entry point that reads one file
// (content sniffing, the header-only reader, the image reader, a one-file series).
#include <cstdint>
#include <vector>

#include "fuzz_support.hpp"
#include "hemoscan/io/dicom.hpp"

using namespace hemoscan;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::init();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
    const std::filesystem::path path = fuzz::write_input("input.dcm", data, size);
    fuzz::expect_clean("is_dicom_file", [&] { (void)is_dicom_file(path); });
    fuzz::expect_clean("read_dicom_meta", [&] { (void)read_dicom_meta(path); });
    bool readable = false;
    // Any modality: CT-only would stop most inputs before the pixel data.
    fuzz::expect_clean("read_dicom_file", [&] {
        (void)read_dicom_file(path, ModalityPolicy::Any);
        readable = true;
    });
    // The series reader adds grouping and geometry; only worth it for a file that reads.
    if (readable) {
        fuzz::expect_clean("read_dicom_series", [&] { (void)read_dicom_series({path}, ModalityPolicy::Any); });
    }
    return 0;
}

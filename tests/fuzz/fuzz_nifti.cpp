// NIfTI reader harness: the input as input.nii, or input.nii.gz when it starts with the gzip magic
// (niftilib picks the decompression by name), read as a volume and, when that works, as a label map.
#include <cstdint>

#include "fuzz_support.hpp"
#include "hemoscan/io/nifti.hpp"

using namespace hemoscan;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::init();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
    const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    const std::filesystem::path path = fuzz::write_input(gzip ? "input.nii.gz" : "input.nii", data, size);
    bool readable = false;
    fuzz::expect_clean("read_nifti", [&] {
        (void)read_nifti(path);
        readable = true;
    });
    if (readable) fuzz::expect_clean("read_nifti_labels", [&] { (void)read_nifti_labels(path); });
    return 0;
}

// 2D image harness (PNG, JPEG, BMP, TIFF through OpenCV): the input named by its magic number, as the
// extension changes what read_image_2d checks (the JPEG end marker, the PNG IEND chunk); other bytes
// go in as .png. Also the type sniffing of uploads and archives.
#include <cstdint>
#include <cstring>
#include <string>

#include "fuzz_support.hpp"
#include "hemoscan/io/archive.hpp"
#include "hemoscan/io/image2d.hpp"

using namespace hemoscan;

namespace {

const char* name_for(const std::uint8_t* d, size_t n) {
    auto starts = [&](const char* magic, size_t len) { return n >= len && std::memcmp(d, magic, len) == 0; };
    if (starts("\xFF\xD8", 2)) return "input.jpg";
    if (starts("BM", 2)) return "input.bmp";
    if (starts("II*\0", 4) || starts("MM\0*", 4) || starts("II+\0", 4) || starts("MM\0+", 4)) return "input.tif";
    return "input.png";
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::init();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
    const char* name = name_for(data, size);
    const std::filesystem::path path = fuzz::write_input(name, data, size);
    fuzz::expect_clean("sniff_file_type", [&] {
        (void)sniff_file_type(std::string(reinterpret_cast<const char*>(data), size), name);
    });
    fuzz::expect_clean("read_image_2d", [&] { (void)read_image_2d(path); });
    return 0;
}

#include "hemoscan/io/load.hpp"

#include "hemoscan/error.hpp"
#include "hemoscan/io/image2d.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

DicomSlice load_image(const std::filesystem::path& path, ModalityPolicy policy) {
    const std::string name = path.string();
    std::error_code ec;
    if (!fs::exists(path, ec)) throw InputError(name + ": file not found");
    if (fs::is_directory(path, ec)) throw InputError(name + ": is a folder, not an image file");
    if (fs::file_size(path, ec) == 0) throw InputError(name + ": empty file");

    // Content decides for DICOM (many DICOM files have no extension); extensions for the rest.
    if (is_dicom_file(path)) return read_dicom_file(path, policy);
    if (is_image_2d_path(path)) {
        DicomSlice slice;
        slice.pixels = read_image_2d(path, &slice.meta);
        return slice;
    }
    const std::string ext = path.extension().string();
    if (ext == ".dcm" || ext == ".DCM" || ext == ".dicom") {
        // Named like DICOM but not recognised: let the DICOM reader explain what is wrong.
        return read_dicom_file(path, policy);
    }
    throw InputError(name + ": not a supported image (PNG/JPG/BMP/TIFF or DICOM)");
}

}  // namespace hemoscan

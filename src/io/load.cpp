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

Volume slice_volume(const DicomSlice& slice) {
    Volume v;
    const ImageMeta& m = slice.meta;
    v.geometry.spacing = {m.pixel_spacing[1], m.pixel_spacing[0], m.slice_thickness > 0 ? m.slice_thickness : 1.0};
    if (m.has_position) v.geometry.origin = m.position;
    const auto& o = m.orientation;
    const std::array<double, 3> n{o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
    v.geometry.direction = {o[0], o[1], o[2], o[3], o[4], o[5], n[0], n[1], n[2]};
    v.slices.push_back(slice.pixels);
    v.slice_meta.push_back(slice.meta);
    return v;
}

bool looks_like_hu(double min_value) { return min_value <= -900.0; }

ImageMeta slice_meta_of(const Volume& volume, int k) {
    if (k >= 0 && static_cast<size_t>(k) < volume.slice_meta.size()) return volume.slice_meta[static_cast<size_t>(k)];
    ImageMeta m;
    const cv::Mat& s = volume.slices.at(static_cast<size_t>(k));
    m.rows = s.rows;
    m.cols = s.cols;
    double lo = 0, hi = 0;
    if (!s.empty()) cv::minMaxLoc(s.channels() == 1 ? s : s.reshape(1), &lo, &hi);
    m.is_hu = looks_like_hu(lo);
    m.pixel_spacing = {volume.geometry.spacing[1], volume.geometry.spacing[0]};
    return m;
}

void fill_slice_meta(Volume& volume) {
    if (volume.slice_meta.size() == volume.slices.size()) return;
    std::vector<ImageMeta> meta;
    for (int k = 0; k < volume.depth(); ++k) meta.push_back(slice_meta_of(volume, k));
    volume.slice_meta = std::move(meta);
}

}  // namespace hemoscan

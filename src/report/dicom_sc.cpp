// Secondary Captures (SC) of the key slices: the mask or heatmap overlay as an RGB picture that every
// viewer shows, marked as derived, with burned-in annotation, and not for primary diagnosis.
#include "report/dicom_detail.hpp"  // first: DCMTK's configuration header leads

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "hemoscan/error.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/version.hpp"

namespace hemoscan::dicom_detail {

namespace {

constexpr const char* kScNotice = "hemoscan overlay - not for primary diagnosis";

// What slice k shows: the segmentation, else the Grad-CAM heatmap (at least at the slice's size, up to
// 512 pixels: model inputs are small), else the slice in the brain window.
cv::Mat key_picture(const OutputContext& ctx, size_t k) {
    const DicomSlice& slice = ctx.input.slices[k];
    if (has_segmentation(ctx)) {
        return segmentation_overlay(slice.pixels, slice.meta, ctx.result.segmentation.result.labels.slices[k]);
    }
    if (!ctx.result.heatmaps.empty()) {
        cv::Mat picture = heatmap_overlay(ctx.result.samples[k], ctx.result.heatmaps[k]);
        const int longest = std::max(picture.rows, picture.cols);
        const int target = std::max(longest, std::min(512, std::max(slice.pixels.rows, slice.pixels.cols)));
        if (target > longest) {
            const double scale = static_cast<double>(target) / longest;
            cv::resize(picture, picture, cv::Size(), scale, scale, cv::INTER_LINEAR);
        }
        return picture;
    }
    return segmentation_overlay(slice.pixels, slice.meta, cv::Mat::zeros(slice.pixels.size(), CV_8UC1));
}

// PatientOrientation (rows, columns) from ImageOrientationPatient: the main direction of each in LPS.
std::string patient_orientation(const std::array<double, 6>& o) {
    auto letter = [](double x, double y, double z) {
        const double ax = std::abs(x), ay = std::abs(y), az = std::abs(z);
        if (ax >= ay && ax >= az) return x >= 0 ? "L" : "R";
        if (ay >= az) return y >= 0 ? "P" : "A";
        return z >= 0 ? "H" : "F";
    };
    return std::string(letter(o[0], o[1], o[2])) + "\\" + letter(o[3], o[4], o[5]);
}

std::string source_string(DcmItem& item, const DcmTagKey& key) {
    OFString value;
    return item.findAndGetOFStringArray(key, value).good() ? value.c_str() : "";
}

// SourceImageSequence: the slice the picture was made from.
void add_source_reference(DcmDataset& ds, const SourceSlice& slice, const fs::path& path) {
    DcmItem* item = nullptr;
    check_dcmtk(ds.findOrCreateSequenceItem(DCM_SourceImageSequence, item, -2 /*new item*/), path, "source image");
    check_dcmtk(item->putAndInsertString(DCM_ReferencedSOPClassUID, slice.sop_class_uid.c_str()), path, "source");
    check_dcmtk(item->putAndInsertString(DCM_ReferencedSOPInstanceUID, slice.sop_instance_uid.c_str()), path, "source");
    DcmItem* purpose = nullptr;
    check_dcmtk(item->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, -2), path, "purpose");
    check_dcmtk(purpose->putAndInsertString(DCM_CodeValue, kCodeSourceImage.value), path, "purpose");
    check_dcmtk(purpose->putAndInsertString(DCM_CodingSchemeDesignator, kCodeSourceImage.designator), path, "purpose");
    check_dcmtk(purpose->putAndInsertString(DCM_CodeMeaning, kCodeSourceImage.meaning), path, "purpose");
}

void write_one(const OutputContext& ctx, size_t k, int instance, const DicomOutputFile& out) {
    cv::Mat rgb;
    cv::cvtColor(key_picture(ctx, k), rgb, cv::COLOR_BGR2RGB);
    rgb = rgb.clone();  // continuous, for PixelData
    if (rgb.rows > 65535 || rgb.cols > 65535) throw UsageError(out.path.string() + ": picture too large for DICOM");

    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    copy_patient_study(*ctx.source.header->getDataset(), ds);
    OFCondition status;
    auto put = [&](const DcmTagKey& key, const std::string& value) {
        if (status.good()) status = ds.putAndInsertOFStringArray(key, value.c_str());
    };
    auto put_us = [&](const DcmTagKey& key, int value) {
        if (status.good()) status = ds.putAndInsertUint16(key, static_cast<Uint16>(value));
    };
    put(DCM_SOPClassUID, out.sop_class_uid);
    put(DCM_SOPInstanceUID, out.sop_instance_uid);
    put(DCM_InstanceCreationDate, dicom_date_now());
    put(DCM_InstanceCreationTime, dicom_time_now());
    // General Series, General Equipment and SC Equipment
    put(DCM_Modality, "OT");
    // Laterality (2C) is for paired body parts: said by the body part, copied only when the source has one.
    DcmDataset& source = *ctx.source.header->getDataset();
    const std::string body_part = source_string(source, DCM_BodyPartExamined);
    put(DCM_BodyPartExamined, body_part.empty() ? "HEAD" : body_part);
    if (const std::string laterality = source_string(source, DCM_Laterality); !laterality.empty()) {
        put(DCM_Laterality, laterality);
    }
    put(DCM_SeriesInstanceUID, out.series_uid);
    put(DCM_SeriesNumber, std::to_string(ctx.options.series_number + 2));
    put(DCM_SeriesDescription, "hemoscan key images");
    put(DCM_Manufacturer, ctx.options.manufacturer);
    put(DCM_SoftwareVersions, kVersion);
    put(DCM_ConversionType, "WSD");
    put(DCM_SecondaryCaptureDeviceManufacturer, ctx.options.manufacturer);
    put(DCM_SecondaryCaptureDeviceManufacturerModelName, "hemoscan");
    put(DCM_SecondaryCaptureDeviceSoftwareVersions, kVersion);
    // General Image
    put(DCM_InstanceNumber, std::to_string(instance));
    put(DCM_PatientOrientation, patient_orientation(ctx.input.slices[k].meta.orientation));
    put(DCM_ContentDate, dicom_date_now());
    put(DCM_ContentTime, dicom_time_now());
    put(DCM_ImageType, "DERIVED\\SECONDARY");
    put(DCM_DerivationDescription, kScNotice);
    put(DCM_ImageComments, std::string(kScNotice) + " (slice " + std::to_string(k + 1) + " of " +
                               std::to_string(ctx.input.slices.size()) + ")");
    put(DCM_BurnedInAnnotation, "YES");
    put(DCM_LossyImageCompression, "00");
    // Image Pixel: 8-bit RGB, pixel-interleaved
    put_us(DCM_SamplesPerPixel, 3);
    put(DCM_PhotometricInterpretation, "RGB");
    put_us(DCM_PlanarConfiguration, 0);
    put_us(DCM_Rows, rgb.rows);
    put_us(DCM_Columns, rgb.cols);
    put_us(DCM_BitsAllocated, 8);
    put_us(DCM_BitsStored, 8);
    put_us(DCM_HighBit, 7);
    put_us(DCM_PixelRepresentation, 0);
    if (status.good()) {
        status = ds.putAndInsertUint8Array(DCM_PixelData, rgb.data, static_cast<unsigned long>(rgb.total() * 3));
    }
    check_dcmtk(status, out.path, "secondary capture");
    add_source_reference(ds, ctx.source.slices[k], out.path);
    save_dicom_atomic(file, out.path);
}

}  // namespace

std::vector<DicomOutputFile> write_dicom_sc(const OutputContext& ctx) {
    const std::string series_uid = new_dicom_uid();
    std::vector<DicomOutputFile> written;
    for (size_t i = 0; i < ctx.key_slices.size(); ++i) {
        DicomOutputFile out{ctx.dir / ("sc_" + std::to_string(i + 1) + ".dcm"), "SC",
                            UID_SecondaryCaptureImageStorage, new_dicom_uid(), series_uid};
        write_one(ctx, ctx.key_slices[i], static_cast<int>(i + 1), out);
        written.push_back(std::move(out));
    }
    return written;
}

}  // namespace hemoscan::dicom_detail

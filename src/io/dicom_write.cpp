#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcrlerp.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrplol.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <dcmtk/dcmjpls/djrparam.h>
#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dcmtk_setup.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/util/fs.hpp"

namespace hemoscan {

namespace detail {

void ensure_dcmtk_encoders() {
    static std::once_flag once;
    std::call_once(once, [] {
        ensure_dcmtk_decoders();
        DcmRLEEncoderRegistration::registerCodecs();
        DJEncoderRegistration::registerCodecs();  // "real lossless" is on by default
        DJLSEncoderRegistration::registerCodecs();
    });
}

std::string ds_value(double v) {
    char buf[32];
    for (int precision = 12; precision > 0; --precision) {
        std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
        if (std::string(buf).size() <= 16) break;
    }
    return buf;
}

}  // namespace detail

namespace {

using detail::ds_value;


template <size_t N>
std::string ds_values(const std::array<double, N>& values) {
    std::string out;
    for (size_t i = 0; i < N; ++i) out += (i ? "\\" : "") + ds_value(values[i]);
    return out;
}

struct Encoding {
    E_TransferSyntax xfer;
    std::unique_ptr<DcmRepresentationParameter> param;
};

Encoding encoding_for(const std::string& name) {
    if (name == "uncompressed") return {EXS_LittleEndianExplicit, nullptr};
    if (name == "rle") return {EXS_RLELossless, std::make_unique<DcmRLERepresentationParameter>()};
    if (name == "jpeg-ls") return {EXS_JPEGLSLossless, std::make_unique<DJLSRepresentationParameter>(0, OFTrue)};
    if (name == "jpeg-lossless") {
        return {EXS_JPEGProcess14SV1, std::make_unique<DJ_RPLossless>(1 /*first-order prediction*/, 0)};
    }
    throw UsageError("unknown DICOM transfer syntax '" + name + "' (uncompressed, rle, jpeg-ls, jpeg-lossless)");
}

const char* sop_class_for(const std::string& modality) {
    if (modality == "CT") return UID_CTImageStorage;
    if (modality == "MR") return UID_MRImageStorage;
    return UID_SecondaryCaptureImageStorage;  // other modalities are only written for tests
}

}  // namespace

std::string new_dicom_uid() {
    char uid[100];
    dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
    return uid;
}

void write_dicom_ct(const std::filesystem::path& path, const cv::Mat& hu, const DicomWriteOptions& options) {
    const std::string name = path.string();
    if (hu.empty() || hu.channels() != 1) throw UsageError("cannot write " + name + ": one-channel image expected");
    if (options.rescale_slope == 0 || !std::isfinite(options.rescale_slope)) {
        throw UsageError("cannot write " + name + ": RescaleSlope must be non-zero");
    }
    if (options.photometric != "MONOCHROME1" && options.photometric != "MONOCHROME2") {
        throw UsageError("cannot write " + name + ": photometric must be MONOCHROME1 or MONOCHROME2");
    }
    const Encoding encoding = encoding_for(options.transfer_syntax);

    cv::Mat values;
    hu.convertTo(values, CV_64F);
    std::vector<Uint16> stored(values.total());
    size_t k = 0;
    for (int r = 0; r < values.rows; ++r) {
        const double* row = values.ptr<double>(r);
        for (int c = 0; c < values.cols; ++c) {
            const double s = std::round((row[c] - options.rescale_intercept) / options.rescale_slope);
            stored[k++] = static_cast<Uint16>(std::isfinite(s) ? std::clamp(s, 0.0, 65535.0) : 0.0);
        }
    }

    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    OFCondition status;
    auto put = [&](const DcmTagKey& key, const std::string& value) {
        if (status.good()) status = ds.putAndInsertOFStringArray(key, value.c_str());
    };
    auto put_us = [&](const DcmTagKey& key, long value) {
        if (status.good()) status = ds.putAndInsertUint16(key, static_cast<Uint16>(value));
    };
    const std::string study_uid = options.study_uid.empty() ? new_dicom_uid() : options.study_uid;
    const std::string series_uid = options.series_uid.empty() ? new_dicom_uid() : options.series_uid;
    const std::string sop_uid = options.sop_uid.empty() ? new_dicom_uid() : options.sop_uid;

    const bool mr = options.modality == "MR";
    put(DCM_ImageType, !options.image_type.empty() ? options.image_type
                       : mr                         ? std::string("ORIGINAL\\PRIMARY\\M\\ND")
                                                    : std::string("ORIGINAL\\PRIMARY\\AXIAL"));
    put(DCM_SOPClassUID, sop_class_for(options.modality));
    put(DCM_SOPInstanceUID, sop_uid);
    put(DCM_Modality, options.modality);
    put(DCM_PatientName, options.patient_name);
    put(DCM_PatientID, options.patient_id);
    put(DCM_StudyInstanceUID, study_uid);
    put(DCM_SeriesInstanceUID, series_uid);
    put(DCM_SeriesNumber, std::to_string(options.series_number));
    if (!options.series_description.empty()) put(DCM_SeriesDescription, options.series_description);
    put(DCM_InstanceNumber, std::to_string(options.instance_number));
    if (!options.frame_of_reference_uid.empty()) {
        put(DCM_FrameOfReferenceUID, options.frame_of_reference_uid);
        put(DCM_PositionReferenceIndicator, "");  // type 2 in the Frame of Reference module
    }
    put(DCM_ImagePositionPatient, ds_values(options.position));
    put(DCM_ImageOrientationPatient, ds_values(options.orientation));
    put(DCM_SliceThickness, ds_value(options.slice_thickness));
    put(DCM_PixelSpacing, ds_values(options.pixel_spacing));
    put_us(DCM_SamplesPerPixel, 1);
    put(DCM_PhotometricInterpretation, options.photometric);
    put_us(DCM_Rows, values.rows);
    put_us(DCM_Columns, values.cols);
    put_us(DCM_BitsAllocated, 16);
    put_us(DCM_BitsStored, 16);
    put_us(DCM_HighBit, 15);
    put_us(DCM_PixelRepresentation, 0);
    if (options.has_padding) put_us(DCM_PixelPaddingValue, options.pixel_padding_value);
    put(DCM_WindowCenter, ds_value(options.window_center));
    put(DCM_WindowWidth, ds_value(options.window_width));
    if (!mr || options.rescale_intercept != 0 || options.rescale_slope != 1) {
        put(DCM_RescaleIntercept, ds_value(options.rescale_intercept));
        put(DCM_RescaleSlope, ds_value(options.rescale_slope));
    }
    if (options.modality == "CT") put(DCM_RescaleType, "HU");
    if (mr) {
        put(DCM_ScanningSequence, options.scanning_sequence);
        put(DCM_SequenceVariant, options.sequence_variant);
        put(DCM_ScanOptions, "");
        put(DCM_MRAcquisitionType, options.acquisition_type);
        if (!options.sequence_name.empty()) put(DCM_SequenceName, options.sequence_name);
        put(DCM_RepetitionTime, ds_value(options.repetition_time));
        put(DCM_EchoTime, ds_value(options.echo_time));
        if (options.inversion_time > 0) put(DCM_InversionTime, ds_value(options.inversion_time));
        put(DCM_EchoTrainLength, "1");
        put(DCM_FlipAngle, ds_value(options.flip_angle));
        put(DCM_MagneticFieldStrength, ds_value(options.field_strength));
    }
    if (status.good()) {
        status = ds.putAndInsertUint16Array(DCM_PixelData, stored.data(), static_cast<unsigned long>(stored.size()));
    }
    if (status.bad()) throw Error("cannot build DICOM data set for " + name + ": " + status.text());

    if (encoding.xfer != EXS_LittleEndianExplicit) {
        detail::ensure_dcmtk_encoders();
        status = ds.chooseRepresentation(encoding.xfer, encoding.param.get());
        if (status.bad() || !ds.canWriteXfer(encoding.xfer)) {
            throw Error(fmt::format("cannot encode {} as {}: {}", name, options.transfer_syntax,
                                    status.bad() ? status.text() : "encoder refused"));
        }
    }
    write_atomic_with(path, [&](const fs::path& tmp) {
        const OFCondition saved = file.saveFile(tmp.string().c_str(), encoding.xfer);
        if (saved.bad()) throw Error("cannot write " + name + ": " + saved.text());
    });
}

}  // namespace hemoscan

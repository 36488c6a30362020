// The DICOM Segmentation (SEG) of a study: one binary segment per bleed class with voxels, one frame per
// source slice and segment, in the source geometry and referencing each source instance.
#include "report/dicom_detail.hpp"  // first: DCMTK's configuration header leads

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmiod/cielabutil.h>
#include <dcmtk/dcmiod/iodreferences.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>

#include <opencv2/core.hpp>

#include <algorithm>
#include <cmath>
#include <memory>

#include "hemoscan/error.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/version.hpp"

namespace hemoscan::dicom_detail {

namespace {

CodeSequenceMacro seg_code(const Code& c) { return CodeSequenceMacro(c.value, c.designator, c.meaning); }

// Where slice k lies: its ImagePositionPatient, else the volume's origin stepped along the normal.
std::array<double, 3> slice_position(const StudyInput& input, size_t k) {
    const ImageMeta& meta = input.slices[k].meta;
    if (meta.has_position) return meta.position;
    const Geometry& g = input.volume.geometry;
    const double step = static_cast<double>(k) * g.spacing[2];
    return {g.origin[0] + step * g.direction[6], g.origin[1] + step * g.direction[7],
            g.origin[2] + step * g.direction[8]};
}

// The bleed classes with at least one voxel, in the segmenter's order.
std::vector<int> classes_found(const OutputContext& ctx) {
    const auto& labels = ctx.result.segmentation.result.labels.slices;
    std::vector<int> found;
    for (int c : ctx.segmenter->bleed_classes()) {
        const bool any = std::any_of(labels.begin(), labels.end(), [c](const cv::Mat& m) {
            return cv::countNonZero(m == c) > 0;
        });
        if (any) found.push_back(c);
    }
    return found;
}

// The geometry every frame shares: orientation, pixel spacing, thickness (and step between slices).
void add_shared_groups(DcmSegmentation& seg, const OutputContext& ctx, const fs::path& path) {
    const ImageMeta& meta = ctx.input.slices.front().meta;
    const auto& o = meta.orientation;
    FGPlaneOrientationPatient orientation;
    check_dcmtk(orientation.setImageOrientationPatient(ds_value(o[0]), ds_value(o[1]), ds_value(o[2]),
                                                       ds_value(o[3]), ds_value(o[4]), ds_value(o[5])),
                path, "orientation");
    check_dcmtk(seg.addForAllFrames(orientation), path, "orientation");
    FGPixelMeasures measures;
    check_dcmtk(measures.setPixelSpacing(ds_values(meta.pixel_spacing)), path, "pixel spacing");
    check_dcmtk(measures.setSliceThickness(ds_value(slice_thickness(ctx.input))), path, "slice thickness");
    if (ctx.input.slices.size() > 1 && ctx.input.volume.geometry.spacing[2] > 0) {
        check_dcmtk(measures.setSpacingBetweenSlices(ds_value(ctx.input.volume.geometry.spacing[2])), path,
                    "spacing between slices");
    }
    check_dcmtk(seg.addForAllFrames(measures), path, "pixel measures");
}

// A segment of class `c`: coded as a hemorrhage, labelled with the class name, shown in the overlays' colour.
Uint16 add_segment(DcmSegmentation& seg, const OutputContext& ctx, int c, const fs::path& path) {
    const std::string name = ctx.segmenter->class_names()[static_cast<size_t>(c)];
    const std::string algorithm = ctx.options.seg_model_name.empty() ? "hemoscan" : ctx.options.seg_model_name;
    DcmSegment* raw = nullptr;
    check_dcmtk(DcmSegment::create(raw, name.substr(0, 64), seg_code(kCodeMorphologicallyAltered),
                                   seg_code(kCodeHemorrhage), DcmSegTypes::SAT_AUTOMATIC,
                                   std::string(algorithm, 0, 64).c_str()),
                path, "segment " + name);
    std::unique_ptr<DcmSegment> segment(raw);
    check_dcmtk(segment->setSegmentDescription(name + " hemorrhage (hemoscan " + kVersion + ")"), path,
                "segment description");
    const cv::Scalar bgr = segmentation_colour(c);
    double l = 0, a = 0, b = 0;
    IODCIELabUtil::rgb2DicomLab(l, a, b, bgr[2] / 255.0, bgr[1] / 255.0, bgr[0] / 255.0);
    auto u16 = [](double v) { return static_cast<Uint16>(std::clamp(std::lround(v), 0L, 65535L)); };
    check_dcmtk(segment->setRecommendedDisplayCIELabValue(u16(l), u16(a), u16(b)), path, "segment colour");
    Uint16 number = 0;
    check_dcmtk(seg.addSegment(segment.get(), number), path, "segment " + name);
    segment.release();  // the segmentation owns it now
    return number;
}

// One frame per source slice: the class's voxels, where the slice lies, which instance it derives from.
void add_frames(DcmSegmentation& seg, const OutputContext& ctx, int c, Uint16 number, const fs::path& path) {
    const auto& labels = ctx.result.segmentation.result.labels.slices;
    std::vector<Uint8> pixels;
    for (size_t k = 0; k < labels.size(); ++k) {
        const cv::Mat mask = labels[k] == c;  // 255 where set; DCMTK packs every non-zero byte as 1
        pixels.assign(mask.datastart, mask.dataend);
        const auto p = slice_position(ctx.input, k);
        FGPlanePosPatient position;
        check_dcmtk(position.setImagePositionPatient(ds_value(p[0]), ds_value(p[1]), ds_value(p[2])), path,
                    "position");
        FGFrameContent content;
        check_dcmtk(content.setDimensionIndexValues(number, 0), path, "dimension index");
        check_dcmtk(content.setDimensionIndexValues(static_cast<Uint32>(k + 1), 1), path, "dimension index");
        OFVector<ImageSOPInstanceReferenceMacro> refs(1);
        check_dcmtk(refs[0].setReferencedSOPClassUID(ctx.source.slices[k].sop_class_uid.c_str()), path, "reference");
        check_dcmtk(refs[0].setReferencedSOPInstanceUID(ctx.source.slices[k].sop_instance_uid.c_str()), path,
                    "reference");
        std::unique_ptr<FGDerivationImage> derivation(
            DcmSegmentation::createDerivationImageFG(refs, "hemoscan segmentation"));
        if (!derivation) throw Error("cannot write " + path.string() + ": derivation image");
        OFVector<FGBase*> groups;
        groups.push_back(&position);
        groups.push_back(&content);
        groups.push_back(derivation.get());
        check_dcmtk(seg.addFrame(pixels.data(), number, groups), path, "frame " + std::to_string(k + 1));
    }
}

// The series, instance and references: what ties the SEG to its source.
void set_identity(DcmSegmentation& seg, const OutputContext& ctx, const DicomOutputFile& out) {
    const fs::path& path = out.path;
    check_dcmtk(seg.importFromSourceImage(*ctx.source.header->getDataset()), path, "patient and study");
    if (ctx.source.frame_of_reference_uid.empty()) {
        // The source has none (a broken CT): the frames' positions still need one to be read in.
        check_dcmtk(seg.getFrameOfReference().setFrameOfReferenceUID(new_dicom_uid().c_str()), path,
                    "frame of reference");
    }
    check_dcmtk(seg.getSeries().setSeriesInstanceUID(out.series_uid.c_str()), path, "series");
    check_dcmtk(seg.getSeries().setSeriesNumber(std::to_string(ctx.options.series_number).c_str()), path, "series");
    check_dcmtk(seg.getSeries().setSeriesDescription("hemoscan hemorrhage segmentation"), path, "series");
    check_dcmtk(seg.getSOPCommon().setSOPInstanceUID(out.sop_instance_uid.c_str()), path, "instance");

    IODReferences references;
    const std::string patient_id = ctx.input.slices.front().meta.patient_id;
    for (const SourceSlice& s : ctx.source.slices) {
        references.add(new IODImageReference(patient_id.c_str(), ctx.source.study_uid.c_str(), s.series_uid.c_str(),
                                             s.sop_instance_uid.c_str(), s.sop_class_uid.c_str()));
    }
    if (seg.getCommonInstanceReference().addReferences(references, ctx.source.study_uid.c_str()) !=
        ctx.source.slices.size()) {
        throw Error("cannot write " + path.string() + ": referenced series");
    }
    const std::string dim_uid = new_dicom_uid();
    IODMultiframeDimensionModule& dims = seg.getDimensions();
    check_dcmtk(dims.addDimensionIndex(DCM_ReferencedSegmentNumber, dim_uid.c_str(), DCM_SegmentIdentificationSequence,
                                       "ReferencedSegmentNumber"),
                path, "dimensions");
    check_dcmtk(dims.addDimensionIndex(DCM_ImagePositionPatient, dim_uid.c_str(), DCM_PlanePositionSequence,
                                       "ImagePositionPatient"),
                path, "dimensions");
}

}  // namespace

std::optional<DicomOutputFile> write_dicom_seg(const OutputContext& ctx) {
    const std::vector<int> found = classes_found(ctx);
    if (found.empty()) return std::nullopt;
    DicomOutputFile out{ctx.dir / "seg.dcm", "SEG", UID_SegmentationStorage, new_dicom_uid(), new_dicom_uid()};
    const cv::Mat& first = ctx.result.segmentation.result.labels.slices.front();
    if (first.rows > 65535 || first.cols > 65535) throw UsageError(out.path.string() + ": slices too large for DICOM");

    const IODGeneralEquipmentModule::EquipmentInfo equipment(ctx.options.manufacturer.c_str(), "hemoscan",
                                                             "0" /*no serial number: software*/, kVersion);
    const ContentIdentificationMacro content("1", "HEMOSCAN_SEG", "Hemorrhage segmentation by hemoscan",
                                             "hemoscan^");
    DcmSegmentation* raw = nullptr;
    check_dcmtk(DcmSegmentation::createBinarySegmentation(raw, static_cast<Uint16>(first.rows),
                                                          static_cast<Uint16>(first.cols), equipment, content),
                out.path, "segmentation");
    std::unique_ptr<DcmSegmentation> seg(raw);
    set_identity(*seg, ctx, out);
    add_shared_groups(*seg, ctx, out.path);
    for (int c : found) add_frames(*seg, ctx, c, add_segment(*seg, ctx, c, out.path), out.path);

    DcmFileFormat file;
    check_dcmtk(seg->writeDataset(*file.getDataset()), out.path, "segmentation");
    DcmDataset& ds = *file.getDataset();
    ds.putAndInsertString(DCM_ImageComments, "hemoscan segmentation - not for primary diagnosis");
    save_dicom_atomic(file, out.path);
    return out;
}

}  // namespace hemoscan::dicom_detail

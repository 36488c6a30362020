// The Comprehensive Structured Report (SR) of a study: the finding, the probability and decision per
// label, the bleed volume per class in mL, the models, the key slices. The tree (docs/dicom-outputs.md):
//   CONTAINER Diagnostic imaging report
//     CONTAINS CONTAINER Findings
//       CONTAINS TEXT Finding, CODE Hemorrhage = Present | Absent
//       CONTAINS NUM Probability of <label> {1}     HAS PROPERTIES CODE Model decision = Present | Absent
//       CONTAINS NUM Volume (ml)                    HAS CONCEPT MOD CODE Finding = <class> | Hemorrhage
//     CONTAINS CONTAINER Key Images: CONTAINS IMAGE (source instances)
//     CONTAINS TEXT Algorithm Name, Algorithm Version, Comment (not for primary diagnosis)
#include "report/dicom_detail.hpp"  // first: DCMTK's configuration header leads

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmsr/dsrdoc.h>
#include <dcmtk/dcmsr/dsrimgvl.h>
#include <dcmtk/dcmsr/dsrnumvl.h>

#include <spdlog/fmt/fmt.h>

#include "hemoscan/error.hpp"
#include "hemoscan/version.hpp"

namespace hemoscan::dicom_detail {

namespace {

DSRCodedEntryValue sr_code(const Code& c) { return DSRCodedEntryValue(c.value, c.designator, c.meaning); }
DSRCodedEntryValue sr_private(const std::string& value, const std::string& meaning) {
    return DSRCodedEntryValue(value.substr(0, 16).c_str(), kPrivateScheme, meaning.substr(0, 64).c_str());
}

const Code kCodeReport{"LN", "18748-4", "Diagnostic imaging report"};
const Code kCodeFindings{"LN", "59776-5", "Findings"};
const Code kCodeKeyImages{"LN", "55113-5", "Key Images"};
const Code kCodeFinding{"DCM", "121071", "Finding"};
const Code kCodeComment{"DCM", "121106", "Comment"};
const Code kCodeAlgorithmName{"DCM", "111001", "Algorithm Name"};
const Code kCodeAlgorithmVersion{"DCM", "111003", "Algorithm Version"};
const Code kCodeVolume{"SCT", "118565006", "Volume"};
const Code kUnitNone{"UCUM", "1", "no units"};
const Code kUnitMl{"UCUM", "ml", "ml"};

// Adds content items, always below a given node, and fails loudly: a report with a hole is no report.
class SrTree {
public:
    SrTree(DSRDocumentTree& tree, const fs::path& path) : tree_(tree), path_(path) {}

    // A child of `parent` (0: the root itself); the new item is the current one.
    size_t add(size_t parent, DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType type,
               const DSRCodedEntryValue& concept) {
        if (parent == 0) {
            if (tree_.addContentItem(DSRTypes::RT_isRoot, type) == 0) fail("root");
            check(tree_.getCurrentContentItem().setConceptName(concept), concept);
        } else {
            if (tree_.gotoNode(parent) != parent) fail("node " + std::to_string(parent));
            check(tree_.addChildContentItem(rel, type, concept), concept);
        }
        return tree_.getNodeID();
    }
    size_t text(size_t parent, const DSRCodedEntryValue& concept, const std::string& value) {
        const size_t id = add(parent, DSRTypes::RT_contains, DSRTypes::VT_Text, concept);
        check(tree_.getCurrentContentItem().setStringValue(value.c_str()), concept);
        return id;
    }
    size_t code(size_t parent, DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue& concept,
                const DSRCodedEntryValue& value) {
        const size_t id = add(parent, rel, DSRTypes::VT_Code, concept);
        check(tree_.getCurrentContentItem().setCodeValue(value), concept);
        return id;
    }
    size_t num(size_t parent, const DSRCodedEntryValue& concept, double value, const Code& unit) {
        const size_t id = add(parent, DSRTypes::RT_contains, DSRTypes::VT_Num, concept);
        check(tree_.getCurrentContentItem().setNumericValue(
                  DSRNumericMeasurementValue(ds_value(value).c_str(), sr_code(unit))),
              concept);
        return id;
    }
    void image(size_t parent, const SourceSlice& slice) {
        if (tree_.gotoNode(parent) != parent) fail("node " + std::to_string(parent));
        if (tree_.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Image, DSRTypes::AM_belowCurrent) == 0) {
            fail("image reference");
        }
        const OFCondition status = tree_.getCurrentContentItem().setImageReference(
            DSRImageReferenceValue(slice.sop_class_uid.c_str(), slice.sop_instance_uid.c_str()));
        if (status.bad()) fail(std::string("image reference: ") + status.text());
    }

private:
    void check(const OFCondition& status, const DSRCodedEntryValue& concept) {
        if (status.bad()) fail(std::string(concept.getCodeMeaning().c_str()) + ": " + status.text());
    }
    [[noreturn]] void fail(const std::string& what) {
        throw Error("cannot write " + path_.string() + ": structured report content: " + what);
    }
    DSRDocumentTree& tree_;
    fs::path path_;
};

DSRCodedEntryValue presence(bool present) { return sr_code(present ? kCodePresent : kCodeAbsent); }

// The finding in words: what each model said.
std::string finding_text(const OutputContext& ctx) {
    std::string text = hemorrhage_present(ctx) ? "Hemorrhage suspected." : "No hemorrhage found.";
    if (ctx.classifier != nullptr) {
        const auto& labels = ctx.classifier->labels();
        std::string positive;
        for (size_t l = 0; l < labels.size(); ++l) {
            if (ctx.result.study.decisions[l] == 0) continue;
            positive += fmt::format("{}{} {:.2f}", positive.empty() ? "" : ", ", labels[l],
                                    ctx.result.study.probabilities[l]);
        }
        text += " Classifier: " + (positive.empty() ? std::string("no label above its threshold") : positive) + ".";
    }
    if (has_segmentation(ctx)) {
        const SegmentationResult& seg = ctx.result.segmentation.result;
        const char* unit = ctx.result.segmentation.spacing_known ? "mL" : "mL (pixel spacing unknown: not real mL)";
        std::string parts;
        for (int c : ctx.segmenter->bleed_classes()) {
            const double ml = seg.volume_ml[static_cast<size_t>(c)];
            if (ml <= 0) continue;
            parts += fmt::format("{}{} {:.2f}", parts.empty() ? "" : ", ", seg.class_names[static_cast<size_t>(c)], ml);
        }
        text += fmt::format(" Segmentation: bleed {:.2f} {}{}.", seg.bleed_volume_ml, unit,
                            parts.empty() ? "" : " (" + parts + ")");
    }
    return text;
}

void add_findings(SrTree& tree, size_t root, const OutputContext& ctx) {
    const size_t findings = tree.add(root, DSRTypes::RT_contains, DSRTypes::VT_Container, sr_code(kCodeFindings));
    tree.text(findings, sr_code(kCodeFinding), finding_text(ctx));
    tree.code(findings, DSRTypes::RT_contains, sr_code(kCodeHemorrhage), presence(hemorrhage_present(ctx)));
    if (ctx.classifier != nullptr) {
        const auto& labels = ctx.classifier->labels();
        for (size_t l = 0; l < labels.size(); ++l) {
            const auto concept = sr_private("PROB-" + std::to_string(l + 1), "Probability of " + labels[l]);
            const size_t p = tree.num(findings, concept, ctx.result.study.probabilities[l], kUnitNone);
            tree.code(p, DSRTypes::RT_hasProperties, sr_private("DECISION", "Model decision"),
                      presence(ctx.result.study.decisions[l] != 0));
        }
    }
    if (!has_segmentation(ctx)) return;
    if (!ctx.result.segmentation.spacing_known) {
        tree.text(findings, sr_code(kCodeComment),
                  "Bleed volumes not reported: the source's pixel spacing is unknown.");
        return;
    }
    const SegmentationResult& seg = ctx.result.segmentation.result;
    for (int c : ctx.segmenter->bleed_classes()) {
        const std::string& name = seg.class_names[static_cast<size_t>(c)];
        const size_t v = tree.num(findings, sr_code(kCodeVolume), seg.volume_ml[static_cast<size_t>(c)], kUnitMl);
        tree.code(v, DSRTypes::RT_hasConceptMod, sr_code(kCodeFinding),
                  sr_private("CLASS-" + std::to_string(c), name + " hemorrhage"));
    }
    const size_t total = tree.num(findings, sr_code(kCodeVolume), seg.bleed_volume_ml, kUnitMl);
    tree.code(total, DSRTypes::RT_hasConceptMod, sr_code(kCodeFinding), sr_code(kCodeHemorrhage));
}

void add_about(SrTree& tree, size_t root, const OutputContext& ctx) {
    if (ctx.classifier != nullptr) {
        const std::string name = ctx.options.model_name.empty() ? "classifier" : ctx.options.model_name;
        tree.text(root, sr_code(kCodeAlgorithmName), name + " (hemorrhage classifier)");
    }
    if (ctx.segmenter != nullptr) {
        const std::string name = ctx.options.seg_model_name.empty() ? "segmenter" : ctx.options.seg_model_name;
        tree.text(root, sr_code(kCodeAlgorithmName), name + " (hemorrhage segmenter)");
    }
    tree.text(root, sr_code(kCodeAlgorithmVersion), std::string("hemoscan ") + kVersion);
    tree.text(root, sr_code(kCodeComment),
              "Produced automatically by hemoscan, a research tool: not for primary diagnosis. Probabilities are "
              "model outputs, not calibrated risks; volumes are of the model's segmentation.");
}

// The patient and study of the source, a new series and instance; `out` gets their UIDs.
void set_header(DSRDocument& doc, const OutputContext& ctx, DicomOutputFile& out) {
    DcmDataset& source = *ctx.source.header->getDataset();
    check_dcmtk(doc.readStudyData(source), out.path, "patient and study");
    OFString charset;
    if (source.findAndGetOFStringArray(DCM_SpecificCharacterSet, charset).good() && !charset.empty()) {
        check_dcmtk(doc.setSpecificCharacterSet(charset), out.path, "character set");
    }
    doc.createNewSeries();
    check_dcmtk(doc.setSeriesNumber(std::to_string(ctx.options.series_number + 1).c_str()), out.path, "series");
    check_dcmtk(doc.setSeriesDescription("hemoscan report"), out.path, "series");
    check_dcmtk(doc.setInstanceNumber("1"), out.path, "instance");
    check_dcmtk(doc.setManufacturer(ctx.options.manufacturer.c_str()), out.path, "equipment");
    check_dcmtk(doc.setManufacturerModelName("hemoscan"), out.path, "equipment");
    check_dcmtk(doc.setSoftwareVersions(kVersion), out.path, "equipment");
    check_dcmtk(doc.setPreliminaryFlag(DSRTypes::PF_Preliminary), out.path, "preliminary flag");
    check_dcmtk(doc.getCodingSchemeIdentification().addItem(kPrivateScheme, "", "hemoscan local codes"), out.path,
                "coding schemes");
    for (const SourceSlice& s : ctx.source.slices) {
        check_dcmtk(doc.getCurrentRequestedProcedureEvidence().addItem(
                        ctx.source.study_uid.c_str(), s.series_uid.c_str(), s.sop_class_uid.c_str(),
                        s.sop_instance_uid.c_str()),
                    out.path, "evidence");
    }
    OFString value;
    doc.getSeriesInstanceUID(value);
    out.series_uid = value.c_str();
    doc.getSOPInstanceUID(value);
    out.sop_instance_uid = value.c_str();
}

}  // namespace

DicomOutputFile write_dicom_sr(const OutputContext& ctx) {
    DicomOutputFile out{ctx.dir / "sr.dcm", "SR", UID_ComprehensiveSRStorage, "", ""};
    DSRDocument doc(DSRTypes::DT_ComprehensiveSR);
    set_header(doc, ctx, out);

    SrTree tree(doc.getTree(), out.path);
    const size_t root = tree.add(0, DSRTypes::RT_isRoot, DSRTypes::VT_Container, sr_code(kCodeReport));
    add_findings(tree, root, ctx);
    const size_t keys = tree.add(root, DSRTypes::RT_contains, DSRTypes::VT_Container, sr_code(kCodeKeyImages));
    for (size_t k : ctx.key_slices) tree.image(keys, ctx.source.slices[k]);
    add_about(tree, root, ctx);

    if (!doc.isValid()) throw Error("cannot write " + out.path.string() + ": the structured report is not valid");
    DcmFileFormat file;
    check_dcmtk(doc.write(*file.getDataset()), out.path, "structured report");
    save_dicom_atomic(file, out.path);
    return out;
}

}  // namespace hemoscan::dicom_detail

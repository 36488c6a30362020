#include "hemoscan/io/deid.hpp"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "dcmtk_setup.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "hemoscan/version.hpp"

namespace hemoscan {

namespace {

// PS3.15 Table E.1-1, the Basic Profile column, as applied here (attributes of the table that DCMTK's
// dictionary knows; retired ones included, as old files still carry them):
//   X remove, Z empty, D replace (PatientID/PatientName: the pseudonym; PatientAge: capped at 90Y),
//   U remap (done for every non-DICOM UID anyway; listed for reference), K keep,
//   C keep, with its date shifted: the Retain Longitudinal Temporal Information with Modified Dates
//   option's column (times are kept: the shift is whole days).
// Where the standard allows a choice (X/Z, Z/D, X/Z/D) the choice that keeps a CT image conformant is
// taken: Z for the Type 2 attributes of the CT IOD's modules, X otherwise. Sequences the standard
// marks X/Z/U* (references to other images) are kept: their UIDs are remapped like all others.
struct Rule {
    DcmTagKey tag;
    char action;
};

const Rule kProfileRules[] = {
    {DCM_AccessionNumber, 'Z'},
    {DCM_RETIRED_AcquisitionComments, 'X'},
    {DCM_AcquisitionContextSequence, 'X'},
    {DCM_AcquisitionDate, 'C'},
    {DCM_AcquisitionDateTime, 'C'},
    {DCM_AcquisitionDeviceProcessingDescription, 'X'},
    {DCM_AcquisitionProtocolDescription, 'X'},
    {DCM_AcquisitionTime, 'C'},
    {DCM_ActualHumanPerformersSequence, 'X'},
    {DCM_AdditionalPatientHistory, 'X'},
    {DCM_RETIRED_AddressTrial, 'X'},
    {DCM_AdmissionID, 'X'},
    {DCM_AdmittingDate, 'C'},
    {DCM_AdmittingDiagnosesCodeSequence, 'X'},
    {DCM_AdmittingDiagnosesDescription, 'X'},
    {DCM_AffectedSOPInstanceUID, 'X'},
    {DCM_Allergies, 'X'},
    {DCM_RETIRED_Arbitrary, 'X'},
    {DCM_AuthorObserverSequence, 'X'},
    {DCM_BranchOfService, 'X'},
    {DCM_CassetteID, 'X'},
    {DCM_ClinicalTrialCoordinatingCenterName, 'Z'},
    {DCM_ClinicalTrialProtocolEthicsCommitteeApprovalNumber, 'X'},
    {DCM_ClinicalTrialProtocolEthicsCommitteeName, 'Z'},
    {DCM_ClinicalTrialProtocolID, 'Z'},
    {DCM_ClinicalTrialProtocolName, 'Z'},
    {DCM_ClinicalTrialSeriesDescription, 'X'},
    {DCM_ClinicalTrialSeriesID, 'X'},
    {DCM_ClinicalTrialSiteID, 'Z'},
    {DCM_ClinicalTrialSiteName, 'Z'},
    {DCM_ClinicalTrialSponsorName, 'Z'},
    {DCM_ClinicalTrialSubjectID, 'Z'},
    {DCM_ClinicalTrialSubjectReadingID, 'Z'},
    {DCM_ClinicalTrialTimePointDescription, 'X'},
    {DCM_ClinicalTrialTimePointID, 'Z'},
    {DCM_CommentsOnThePerformedProcedureStep, 'X'},
    {DCM_ConcatenationUID, 'U'},
    {DCM_ConfidentialityConstraintOnPatientDataDescription, 'X'},
    {DCM_ConsultingPhysicianIdentificationSequence, 'X'},
    {DCM_ConsultingPhysicianName, 'X'},
    {DCM_ContentCreatorIdentificationCodeSequence, 'X'},
    {DCM_ContentCreatorName, 'Z'},
    {DCM_ContentDate, 'C'},
    {DCM_ContentSequence, 'X'},
    {DCM_ContentTime, 'C'},
    {DCM_ContextGroupExtensionCreatorUID, 'U'},
    {DCM_ContrastBolusAgent, 'Z'},
    {DCM_ContributionDescription, 'X'},
    {DCM_CountryOfResidence, 'X'},
    {DCM_CreatorVersionUID, 'U'},
    {DCM_CurrentPatientLocation, 'X'},
    {DCM_RETIRED_CurveDate, 'X'},
    {DCM_RETIRED_CurveTime, 'X'},
    {DCM_CustodialOrganizationSequence, 'X'},
    {DCM_DataSetTrailingPadding, 'X'},
    {DCM_DerivationDescription, 'X'},
    {DCM_DetectorID, 'X'},
    {DCM_DeviceDescription, 'X'},
    {DCM_DeviceSerialNumber, 'X'},
    {DCM_DeviceUID, 'U'},
    {DCM_DigitalSignaturesSequence, 'X'},
    {DCM_DigitalSignatureUID, 'U'},
    {DCM_DimensionOrganizationUID, 'U'},
    {DCM_RETIRED_DischargeDiagnosisDescription, 'X'},
    {DCM_RETIRED_DistributionAddress, 'X'},
    {DCM_RETIRED_DistributionName, 'X'},
    {DCM_DoseReferenceUID, 'U'},
    {DCM_EncryptedAttributesSequence, 'X'},
    {DCM_EndAcquisitionDateTime, 'C'},
    {DCM_EthnicGroup, 'X'},
    {DCM_ExpectedCompletionDateTime, 'C'},
    {DCM_FailedSOPInstanceUIDList, 'U'},
    {DCM_FiducialUID, 'U'},
    {DCM_FillerOrderNumberImagingServiceRequest, 'Z'},
    {DCM_FrameComments, 'X'},
    {DCM_FrameOfReferenceUID, 'U'},
    {DCM_GantryID, 'X'},
    {DCM_GeneratorID, 'X'},
    {DCM_GroupOfPatientsIdentificationSequence, 'X'},
    {DCM_HumanPerformerName, 'X'},
    {DCM_HumanPerformerOrganization, 'X'},
    {DCM_IconImageSequence, 'X'},
    {DCM_RETIRED_IdentifyingComments, 'X'},
    {DCM_ImageComments, 'X'},
    {DCM_RETIRED_ImagePresentationComments, 'X'},
    {DCM_ImagingServiceRequestComments, 'X'},
    {DCM_RETIRED_Impressions, 'X'},
    {DCM_InstanceCoercionDateTime, 'C'},
    {DCM_InstanceCreationDate, 'C'},
    {DCM_InstanceCreatorUID, 'U'},
    {DCM_InstitutionAddress, 'X'},
    {DCM_InstitutionCodeSequence, 'X'},
    {DCM_InstitutionName, 'X'},
    {DCM_InstitutionalDepartmentName, 'X'},
    {DCM_InstitutionalDepartmentTypeCodeSequence, 'X'},
    {DCM_RETIRED_InsurancePlanIdentification, 'X'},
    {DCM_IntendedRecipientsOfResultsIdentificationSequence, 'X'},
    {DCM_RETIRED_InterpretationApproverSequence, 'X'},
    {DCM_RETIRED_InterpretationAuthor, 'X'},
    {DCM_RETIRED_InterpretationDiagnosisDescription, 'X'},
    {DCM_RETIRED_InterpretationIDIssuer, 'X'},
    {DCM_RETIRED_InterpretationRecorder, 'X'},
    {DCM_RETIRED_InterpretationText, 'X'},
    {DCM_RETIRED_InterpretationTranscriber, 'X'},
    {DCM_IrradiationEventUID, 'U'},
    {DCM_IssuerOfAccessionNumberSequence, 'X'},
    {DCM_RETIRED_IssuerOfAdmissionID, 'X'},
    {DCM_IssuerOfAdmissionIDSequence, 'X'},
    {DCM_IssuerOfPatientID, 'X'},
    {DCM_IssuerOfPatientIDQualifiersSequence, 'X'},
    {DCM_RETIRED_IssuerOfServiceEpisodeID, 'X'},
    {DCM_IssuerOfServiceEpisodeIDSequence, 'X'},
    {DCM_RETIRED_LargePaletteColorLookupTableUID, 'U'},
    {DCM_LastMenstrualDate, 'C'},
    {DCM_MAC, 'X'},
    {DCM_MediaStorageSOPInstanceUID, 'U'},
    {DCM_MedicalAlerts, 'X'},
    {DCM_RETIRED_MedicalRecordLocator, 'X'},
    {DCM_MilitaryRank, 'X'},
    {DCM_ModifiedAttributesSequence, 'X'},
    {DCM_RETIRED_ModifiedImageDescription, 'X'},
    {DCM_RETIRED_ModifyingDeviceID, 'X'},
    {DCM_RETIRED_ModifyingDeviceManufacturer, 'X'},
    {DCM_NameOfPhysiciansReadingStudy, 'X'},
    {DCM_NamesOfIntendedRecipientsOfResults, 'X'},
    {DCM_Occupation, 'X'},
    {DCM_OperatorIdentificationSequence, 'X'},
    {DCM_OperatorsName, 'X'},
    {DCM_OrderCallbackPhoneNumber, 'X'},
    {DCM_OrderEnteredBy, 'X'},
    {DCM_OrderEntererLocation, 'X'},
    {DCM_OriginalAttributesSequence, 'X'},
    {DCM_RETIRED_OtherPatientIDs, 'X'},
    {DCM_OtherPatientIDsSequence, 'X'},
    {DCM_OtherPatientNames, 'X'},
    {DCM_RETIRED_OverlayDate, 'X'},
    {DCM_RETIRED_OverlayTime, 'X'},
    {DCM_PaletteColorLookupTableUID, 'U'},
    {DCM_ParticipantSequence, 'X'},
    {DCM_PatientAddress, 'X'},
    {DCM_PatientAge, 'D'},  // kept up to 89Y, else 090Y (HIPAA's ages over 89)
    {DCM_PatientAlternativeCalendar, 'X'},
    {DCM_PatientBirthDate, 'Z'},
    {DCM_PatientBirthDateInAlternativeCalendar, 'X'},
    {DCM_PatientBirthName, 'X'},
    {DCM_PatientBirthTime, 'X'},
    {DCM_PatientComments, 'X'},
    {DCM_PatientDeathDateInAlternativeCalendar, 'X'},
    {DCM_PatientID, 'D'},  // the pseudonym: Type 2, and a stable id keeps a patient's studies together
    {DCM_PatientInstitutionResidence, 'X'},
    {DCM_PatientInsurancePlanCodeSequence, 'X'},
    {DCM_PatientMotherBirthName, 'X'},
    {DCM_PatientName, 'D'},  // the same pseudonym
    {DCM_PatientPrimaryLanguageCodeSequence, 'X'},
    {DCM_PatientPrimaryLanguageModifierCodeSequence, 'X'},
    {DCM_PatientReligiousPreference, 'X'},
    {DCM_PatientSex, 'Z'},
    {DCM_PatientSexNeutered, 'X'},
    {DCM_PatientSize, 'X'},
    {DCM_PatientState, 'X'},
    {DCM_PatientTelecomInformation, 'X'},
    {DCM_PatientTelephoneNumbers, 'X'},
    {DCM_PatientTransportArrangements, 'X'},
    {DCM_PatientWeight, 'X'},
    {DCM_PerformedLocation, 'X'},
    {DCM_PerformedProcedureStepDescription, 'X'},
    {DCM_PerformedProcedureStepEndDate, 'C'},
    {DCM_PerformedProcedureStepEndDateTime, 'C'},
    {DCM_PerformedProcedureStepID, 'X'},
    {DCM_PerformedProcedureStepStartDate, 'C'},
    {DCM_PerformedProcedureStepStartDateTime, 'C'},
    {DCM_PerformedStationAETitle, 'X'},
    {DCM_PerformedStationGeographicLocationCodeSequence, 'X'},
    {DCM_PerformedStationName, 'X'},
    {DCM_PerformedStationNameCodeSequence, 'X'},
    {DCM_PerformingPhysicianIdentificationSequence, 'X'},
    {DCM_PerformingPhysicianName, 'X'},
    {DCM_PersonAddress, 'X'},
    {DCM_PersonIdentificationCodeSequence, 'X'},
    {DCM_PersonName, 'Z'},
    {DCM_PersonTelecomInformation, 'X'},
    {DCM_PersonTelephoneNumbers, 'X'},
    {DCM_RETIRED_PhysicianApprovingInterpretation, 'X'},
    {DCM_PhysiciansOfRecord, 'X'},
    {DCM_PhysiciansOfRecordIdentificationSequence, 'X'},
    {DCM_PhysiciansReadingStudyIdentificationSequence, 'X'},
    {DCM_PlacerOrderNumberImagingServiceRequest, 'Z'},
    {DCM_PlateID, 'X'},
    {DCM_PreMedication, 'X'},
    {DCM_PregnancyStatus, 'X'},
    {DCM_PrivateDataElementCharacteristicsSequence, 'X'},
    {DCM_ProtocolName, 'X'},
    {DCM_RETIRED_ReasonForStudy, 'X'},
    {DCM_RETIRED_ReasonForTheImagingServiceRequest, 'X'},
    {DCM_ReasonForVisit, 'X'},
    {DCM_ReasonForVisitCodeSequence, 'X'},
    {DCM_ReceivingApplicationEntityTitle, 'X'},
    {DCM_ReceivingPresentationAddress, 'X'},
    {DCM_ReferencedDigitalSignatureSequence, 'X'},
    {DCM_ReferencedFrameOfReferenceUID, 'U'},
    {DCM_RETIRED_ReferencedGeneralPurposeScheduledProcedureStepTransactionUID, 'U'},
    {DCM_ReferencedImageSequence, 'K'},
    {DCM_ReferencedPatientAliasSequence, 'X'},
    {DCM_ReferencedPatientPhotoSequence, 'X'},
    {DCM_ReferencedPatientSequence, 'X'},
    {DCM_ReferencedPerformedProcedureStepSequence, 'X'},
    {DCM_ReferencedSOPInstanceMACSequence, 'X'},
    {DCM_ReferencedSOPInstanceUID, 'U'},
    {DCM_ReferencedSOPInstanceUIDInFile, 'U'},
    {DCM_ReferencedStudySequence, 'X'},
    {DCM_ReferringPhysicianAddress, 'X'},
    {DCM_ReferringPhysicianIdentificationSequence, 'X'},
    {DCM_ReferringPhysicianName, 'Z'},
    {DCM_ReferringPhysicianTelephoneNumbers, 'X'},
    {DCM_RegionOfResidence, 'X'},
    {DCM_RETIRED_RelatedFrameOfReferenceUID, 'U'},
    {DCM_RequestAttributesSequence, 'X'},
    {DCM_RequestedContrastAgent, 'X'},
    {DCM_RequestedProcedureComments, 'X'},
    {DCM_RequestedProcedureDescription, 'X'},
    {DCM_RequestedProcedureID, 'X'},
    {DCM_RequestedProcedureLocation, 'X'},
    {DCM_RequestedSOPInstanceUID, 'U'},
    {DCM_RequestingPhysician, 'X'},
    {DCM_RequestingService, 'X'},
    {DCM_ResponsibleOrganization, 'X'},
    {DCM_ResponsiblePerson, 'X'},
    {DCM_RETIRED_ResultsComments, 'X'},
    {DCM_RETIRED_ResultsDistributionListSequence, 'X'},
    {DCM_RETIRED_ResultsIDIssuer, 'X'},
    {DCM_ReviewerName, 'X'},
    {DCM_ScheduledHumanPerformersSequence, 'X'},
    {DCM_RETIRED_ScheduledPatientInstitutionResidence, 'X'},
    {DCM_ScheduledPerformingPhysicianIdentificationSequence, 'X'},
    {DCM_ScheduledPerformingPhysicianName, 'X'},
    {DCM_ScheduledProcedureStepDescription, 'X'},
    {DCM_ScheduledProcedureStepEndDate, 'C'},
    {DCM_ScheduledProcedureStepID, 'X'},
    {DCM_ScheduledProcedureStepLocation, 'X'},
    {DCM_ScheduledProcedureStepStartDate, 'C'},
    {DCM_ScheduledStationAETitle, 'X'},
    {DCM_ScheduledStationGeographicLocationCodeSequence, 'X'},
    {DCM_ScheduledStationName, 'X'},
    {DCM_ScheduledStationNameCodeSequence, 'X'},
    {DCM_RETIRED_ScheduledStudyLocation, 'X'},
    {DCM_RETIRED_ScheduledStudyLocationAETitle, 'X'},
    {DCM_SendingApplicationEntityTitle, 'X'},
    {DCM_SendingPresentationAddress, 'X'},
    {DCM_SeriesDate, 'C'},
    {DCM_SeriesDescription, 'X'},
    {DCM_SeriesInstanceUID, 'U'},
    {DCM_SeriesTime, 'C'},
    {DCM_ServiceEpisodeDescription, 'X'},
    {DCM_ServiceEpisodeID, 'X'},
    {DCM_SmokingStatus, 'X'},
    {DCM_SoftwareVersions, 'X'},
    {DCM_SourcePatientGroupIdentificationSequence, 'X'},
    {DCM_SOPInstanceUID, 'U'},
    {DCM_SourceApplicationEntityTitle, 'X'},
    {DCM_SourceImageSequence, 'K'},
    {DCM_SourcePresentationAddress, 'X'},
    {DCM_SpecialNeeds, 'X'},
    {DCM_StationAETitle, 'X'},
    {DCM_StationName, 'X'},
    {DCM_StorageMediaFileSetUID, 'U'},
    {DCM_RETIRED_StudyComments, 'X'},
    {DCM_StudyDate, 'C'},
    {DCM_StudyDescription, 'X'},
    {DCM_StudyID, 'Z'},
    {DCM_RETIRED_StudyIDIssuer, 'X'},
    {DCM_StudyInstanceUID, 'U'},
    {DCM_StudyTime, 'C'},
    {DCM_SynchronizationFrameOfReferenceUID, 'U'},
    {DCM_RETIRED_TemplateExtensionCreatorUID, 'U'},
    {DCM_RETIRED_TemplateExtensionOrganizationUID, 'U'},
    {DCM_RETIRED_TextComments, 'X'},
    {DCM_TextString, 'X'},
    {DCM_TimezoneOffsetFromUTC, 'X'},
    {DCM_RETIRED_TopicAuthor, 'X'},
    {DCM_RETIRED_TopicKeywords, 'X'},
    {DCM_RETIRED_TopicSubject, 'X'},
    {DCM_RETIRED_TopicTitle, 'X'},
    {DCM_TransactionUID, 'U'},
    {DCM_UID, 'U'},
    {DCM_VerifyingObserverIdentificationCodeSequence, 'Z'},
    {DCM_VerifyingObserverName, 'Z'},
    {DCM_VerifyingObserverSequence, 'K'},
    {DCM_VerifyingOrganization, 'X'},
    {DCM_VisitComments, 'X'},
    // Not in Table E.1-1 but of the file meta information: the sender's private data.
    {DCM_PrivateInformationCreatorUID, 'X'},
    {DCM_PrivateInformation, 'X'},
};

// UIDs that name a kind of thing (a SOP class, a transfer syntax, a coding scheme, the writing software),
// not an instance: a vendor's private SOP class remapped would no longer be recognised by anything, and
// none of them says anything about the patient. Every other UID outside the DICOM root is remapped.
const DcmTagKey kClassUidTags[] = {
    DCM_SOPClassUID, DCM_MediaStorageSOPClassUID, DCM_ReferencedSOPClassUID, DCM_AffectedSOPClassUID,
    DCM_RequestedSOPClassUID, DCM_RelatedGeneralSOPClassUID, DCM_OriginalSpecializedSOPClassUID,
    DCM_ReferencedSOPClassUIDInFile, DCM_SOPClassesInStudy, DCM_TransferSyntaxUID,
    DCM_ReferencedTransferSyntaxUIDInFile, DCM_ImplementationClassUID, DCM_CodingSchemeUID, DCM_MappingResourceUID,
};

Uint32 tag_code(const DcmTagKey& key) { return (Uint32{key.getGroup()} << 16) | key.getElement(); }

const std::unordered_map<Uint32, char>& profile_actions() {
    static const std::unordered_map<Uint32, char> table = [] {
        std::unordered_map<Uint32, char> t;
        for (const Rule& r : kProfileRules) t[tag_code(r.tag)] = r.action;
        return t;
    }();
    return table;
}

bool is_class_uid_tag(const DcmTagKey& key) {
    static const std::unordered_set<Uint32> tags = [] {
        std::unordered_set<Uint32> s;
        for (const DcmTagKey& k : kClassUidTags) s.insert(tag_code(k));
        return s;
    }();
    return tags.count(tag_code(key)) > 0;
}

// Private groups (odd), curves (50xx) and overlays (60xx) go whole, whatever their elements.
bool removed_by_group(const DcmTagKey& key) {
    const Uint16 g = key.getGroup();
    return (g & 1) != 0 || (g & 0xFF00) == 0x5000 || (g & 0xFF00) == 0x6000;
}

std::array<unsigned char, 32> keyed_hash(const std::string& key, std::string_view domain, const std::string& text) {
    // The domain keeps the three uses apart: a UID equal to a patient id does not give away either.
    std::string message(domain);
    message += '\0';
    message += text;
    std::array<unsigned char, 32> digest{};
    unsigned int length = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest.data(),
             &length) == nullptr ||
        length != digest.size()) {
        throw Error("HMAC-SHA256 failed (OpenSSL)");
    }
    return digest;
}

// The decimal digits of a big-endian unsigned number (long division by 10): no leading zeros.
std::string big_decimal(std::array<unsigned char, 16> number) {
    std::string digits;
    bool nonzero = true;
    while (nonzero) {
        unsigned remainder = 0;
        nonzero = false;
        for (unsigned char& byte : number) {
            const unsigned value = (remainder << 8) | byte;
            byte = static_cast<unsigned char>(value / 10);
            remainder = value % 10;
            nonzero = nonzero || byte != 0;
        }
        digits += static_cast<char>('0' + remainder);
    }
    std::reverse(digits.begin(), digits.end());
    return digits;
}

// A value without its padding: spaces, or the NUL of a UID (c_str() ends there).
std::string trim_value(const OFString& value) { return trim(value.c_str()); }

// Days since 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's civil algorithms).
long days_from_civil(long y, unsigned m, unsigned d) {
    y -= m <= 2;
    const long era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<long>(doe) - 719468;
}

void civil_from_days(long z, long& y, unsigned& m, unsigned& d) {
    z += 719468;
    const long era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = static_cast<long>(yoe) + era * 400 + (m <= 2);
}

// "YYYYMMDD" (or ACR-NEMA's "YYYY.MM.DD") shifted by `days`; nullopt when it is not a valid date.
std::optional<std::string> shift_date(std::string date, int days) {
    if (date.size() == 10 && date[4] == '.' && date[7] == '.') {
        date = date.substr(0, 4) + date.substr(5, 2) + date.substr(8);
    }
    if (date.size() != 8 || !std::all_of(date.begin(), date.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return std::nullopt;
    }
    const long y = std::stol(date.substr(0, 4));
    const unsigned m = static_cast<unsigned>(std::stoul(date.substr(4, 2)));
    const unsigned d = static_cast<unsigned>(std::stoul(date.substr(6, 2)));
    if (m < 1 || m > 12 || d < 1) return std::nullopt;
    long cy = 0;
    unsigned cm = 0, cd = 0;
    civil_from_days(days_from_civil(y, m, d), cy, cm, cd);
    if (cy != y || cm != m || cd != d) return std::nullopt;  // 20230230 and the like
    civil_from_days(days_from_civil(y, m, d) + days, cy, cm, cd);
    if (cy < 0 || cy > 9999) return std::nullopt;
    char out[16];
    std::snprintf(out, sizeof out, "%04ld%02u%02u", cy, cm, cd);
    return std::string(out);
}

// A DT value ("YYYYMMDDHHMMSS.FFFFFF&ZZXX") with its date part shifted and the time kept. The offset
// from UTC (&ZZXX) is dropped: it tells the region, which is why the profile removes TimezoneOffsetFromUTC.
// Less than a full date (a year only) cannot be shifted by days: nullopt (the value is emptied).
std::optional<std::string> shift_datetime(const std::string& value, int days) {
    if (value.size() < 8) return std::nullopt;
    const auto date = shift_date(value.substr(0, 8), days);
    if (!date) return std::nullopt;
    std::string time = value.substr(8);
    const size_t sign = time.find_first_of("+-");
    if (sign != std::string::npos) time.erase(sign);
    return *date + time;
}

// PatientAge ("nnnY", "nnnM", "nnnW", "nnnD"): kept up to 89 years, else 090Y; nullopt if malformed.
std::optional<std::string> capped_age(const std::string& age) {
    if (age.size() != 4 || !std::all_of(age.begin(), age.begin() + 3, [](char c) { return c >= '0' && c <= '9'; })) {
        return std::nullopt;
    }
    const double n = std::stod(age.substr(0, 3));
    const char unit = age[3];
    const double per_year = unit == 'Y' ? 1 : unit == 'M' ? 12 : unit == 'W' ? 52.1775 : unit == 'D' ? 365.25 : 0;
    if (per_year == 0) return std::nullopt;
    return n / per_year >= 90 ? std::string("090Y") : age;
}

// The state of one file's walk through its data set.
struct Walk {
    const Deidentifier& deid;
    int offset_days;
    DeidReport& report;
};

std::vector<std::string> values_of(DcmElement& element) {
    OFString joined;
    if (element.getOFStringArray(joined).bad()) return {};
    std::vector<std::string> values;
    for (const std::string& v : split(joined.c_str(), '\\')) values.push_back(trim_value(v.c_str()));
    return values;
}

std::string join_values(const std::vector<std::string>& values) {
    std::string out;
    for (size_t i = 0; i < values.size(); ++i) out += (i ? "\\" : "") + values[i];
    return out;
}

void put_values(DcmElement& element, const std::vector<std::string>& values, const std::string& name) {
    if (element.putOFStringArray(join_values(values).c_str()).bad()) {
        throw Error(name + ": cannot set " + std::string(DcmTag(element.getTag()).getTagName()));
    }
}

void remap_uids(DcmElement& element, Walk& w, const std::string& name) {
    if (is_class_uid_tag(element.getTag()) || element.getLength() == 0) return;
    std::vector<std::string> values = values_of(element);
    int changed = 0;
    for (std::string& v : values) {
        if (v.empty() || v == "1.2.840.10008" || v.rfind("1.2.840.10008.", 0) == 0) continue;  // DICOM-defined
        v = w.deid.map_uid(v);
        ++changed;
    }
    if (changed == 0) return;
    put_values(element, values, name);
    w.report.uids_remapped += changed;
}

void shift_dates(DcmElement& element, Walk& w, const std::string& name) {
    if (element.getLength() == 0) return;
    std::vector<std::string> values = values_of(element);
    for (std::string& v : values) {
        if (v.empty()) continue;
        const auto shifted =
            element.ident() == EVR_DA ? shift_date(v, w.offset_days) : shift_datetime(v, w.offset_days);
        if (!shifted) {
            // Not a date this can shift (malformed, a range, a year only): it goes rather than stays true.
            element.clear();
            ++w.report.emptied;
            return;
        }
        v = *shifted;
    }
    put_values(element, values, name);
    ++w.report.dates_shifted;
}

void walk_item(DcmItem& item, Walk& w, const std::string& name, bool root);

// PatientID / PatientName / PatientAge: the 'D' rows. `patient_id` is the item's PatientID as read
// before the walk changed it (nullopt: the item has none). In a nested item (e.g. a referenced patient)
// the pseudonym is that item's own PatientID's; a name without an id there is emptied.
void replace_dummy(DcmElement& element, Walk& w, const std::string& name, bool root,
                   const std::optional<std::string>& patient_id) {
    const DcmTagKey key = element.getTag();
    std::optional<std::string> value;
    if (key == DCM_PatientID || (key == DCM_PatientName && (patient_id || root))) {
        value = w.deid.pseudonym(patient_id.value_or(""));
    } else if (key == DCM_PatientAge && element.getLength() > 0) {
        OFString age;
        element.getOFString(age, 0);
        value = capped_age(trim_value(age));
        if (value && *value == trim_value(age)) return;  // kept as it is
    }
    if (!value) {
        if (element.getLength() > 0) ++w.report.emptied;
        element.clear();
        return;
    }
    if (element.putString(value->c_str()).bad()) throw Error(name + ": cannot set " + key.toString().c_str());
    ++w.report.replaced;
}

// One element that the table keeps (or does not list): sequences are walked, person names emptied,
// UIDs remapped, dates shifted.
void clean_element(DcmElement& element, Walk& w, const std::string& name) {
    switch (element.ident()) {
        case EVR_SQ: {
            auto& sequence = static_cast<DcmSequenceOfItems&>(element);
            for (unsigned long i = 0; i < sequence.card(); ++i) walk_item(*sequence.getItem(i), w, name, false);
            break;
        }
        case EVR_PN:
            if (element.getLength() > 0) {
                element.clear();
                ++w.report.emptied;
            }
            break;
        case EVR_UI:
            remap_uids(element, w, name);
            break;
        case EVR_DA:
        case EVR_DT:
            shift_dates(element, w, name);
            break;
        default:
            break;
    }
}

void walk_item(DcmItem& item, Walk& w, const std::string& name, bool root) {
    const auto& actions = profile_actions();
    std::optional<std::string> patient_id;
    OFString id_value;
    if (item.findAndGetOFString(DCM_PatientID, id_value).good()) patient_id = trim_value(id_value);
    // Backwards, so that removing an element does not move the ones still to visit.
    for (unsigned long i = item.card(); i-- > 0;) {
        DcmElement* element = item.getElement(i);
        if (element == nullptr) continue;
        const DcmTagKey key = element->getTag();
        const auto found = actions.find(tag_code(key));
        // An attribute of unknown VR (not in DCMTK's dictionary, read from implicit VR or sent as UN)
        // cannot be checked for names, UIDs or dates: it goes, like the private ones.
        const DcmEVR vr = element->ident();
        const bool unknown = vr == EVR_UN || vr == EVR_UNKNOWN || vr == EVR_UNKNOWN2B;
        const char action = removed_by_group(key) || unknown ? 'X' : found == actions.end() ? 'K' : found->second;
        if (action == 'X') {
            delete item.remove(i);
            ++w.report.removed;
        } else if (action == 'Z') {
            const bool had_value = element->ident() == EVR_SQ ? static_cast<DcmSequenceOfItems*>(element)->card() > 0
                                                              : element->getLength() > 0;
            element->clear();
            if (had_value) ++w.report.emptied;
        } else if (action == 'D') {
            replace_dummy(*element, w, name, root, patient_id);
        } else {
            clean_element(*element, w, name);
        }
    }
}

void check_burned_in(DcmDataset& ds, const std::string& name, bool allow) {
    OFString value;
    if (ds.findAndGetOFString(DCM_BurnedInAnnotation, value).bad()) return;
    if (to_lower(trim_value(value)) != "yes" || allow) return;
    throw InputError(name + ": BurnedInAnnotation is YES: text burned into the pixels (names, dates) is not "
                            "removed by de-identification; check the images and pass `allow_burned_in` to go on");
}

void add_code_item(DcmSequenceOfItems& sequence, const char* value, const char* meaning) {
    for (unsigned long i = 0; i < sequence.card(); ++i) {
        OFString existing;
        if (sequence.getItem(i)->findAndGetOFString(DCM_CodeValue, existing).good() && existing == value) return;
    }
    auto item = std::make_unique<DcmItem>();
    OFCondition st = item->putAndInsertString(DCM_CodeValue, value);
    if (st.good()) st = item->putAndInsertString(DCM_CodingSchemeDesignator, "DCM");
    if (st.good()) st = item->putAndInsertString(DCM_CodeMeaning, meaning);
    if (st.good()) st = sequence.append(item.get());
    if (st.bad()) throw Error(std::string("cannot add the de-identification code ") + value + ": " + st.text());
    item.release();  // the sequence owns it now
}

// The record of what was done (PS3.15 E.1.1; PS3.3 C.7.1.1). The codes of an earlier de-identification
// stay; ours are added.
void add_deid_attributes(DcmDataset& ds, const std::string& name) {
    // DeidentificationMethod is LO (64 characters a value), 1-n: one value a statement.
    const std::string method = std::string("hemoscan ") + kVersion +
                               "\\PS3.15 E.1 Basic Application Level Confidentiality Profile"
                               "\\Retain Longitudinal Temporal Information Modified Dates"
                               "\\UIDs remapped under 2.25 with a keyed HMAC-SHA256";
    OFCondition st = ds.putAndInsertString(DCM_PatientIdentityRemoved, "YES");
    if (st.good()) st = ds.putAndInsertOFStringArray(DCM_DeidentificationMethod, method.c_str());
    if (st.good()) st = ds.putAndInsertString(DCM_LongitudinalTemporalInformationModified, "MODIFIED");
    if (st.bad()) throw Error(name + ": cannot add the de-identification attributes: " + st.text());
    DcmSequenceOfItems* codes = nullptr;
    if (ds.findAndGetSequence(DCM_DeidentificationMethodCodeSequence, codes).bad() || codes == nullptr) {
        auto created = std::make_unique<DcmSequenceOfItems>(DCM_DeidentificationMethodCodeSequence);
        if (ds.insert(created.get(), true).bad()) throw Error(name + ": cannot add DeidentificationMethodCodeSequence");
        codes = created.release();
    }
    add_code_item(*codes, "113100", "Basic Application Confidentiality Profile");
    add_code_item(*codes, "113107", "Retain Longitudinal Temporal Information Modified Dates Option");
}

bool is_dicomdir(DcmMetaInfo& meta, DcmDataset& ds) {
    OFString sop_class;
    if (meta.findAndGetOFString(DCM_MediaStorageSOPClassUID, sop_class).good() &&
        trim_value(sop_class) == UID_MediaStorageDirectoryStorage) {
        return true;
    }
    return ds.tagExists(DCM_DirectoryRecordSequence);
}

// The regular files under `folder`, sorted (the order of the reports and of the progress).
std::vector<fs::path> files_under(const fs::path& folder) {
    std::vector<fs::path> files;
    std::error_code ec;
    fs::recursive_directory_iterator it(folder, fs::directory_options::skip_permission_denied, ec), end;
    if (ec) throw InputError(folder.string() + ": cannot list the folder (" + ec.message() + ")");
    for (; it != end; it.increment(ec)) {
        if (ec) throw InputError(folder.string() + ": cannot list the folder (" + ec.message() + ")");
        if (it->is_regular_file(ec)) files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

// Writing into the input folder would make the outputs inputs of a later run (or of this one).
void check_out_not_inside(const fs::path& in, const fs::path& out) {
    std::error_code ec;
    const fs::path a = fs::weakly_canonical(fs::absolute(in), ec);
    const fs::path b = fs::weakly_canonical(fs::absolute(out), ec);
    auto ai = a.begin();
    auto bi = b.begin();
    for (; ai != a.end() && bi != b.end() && *ai == *bi; ++ai, ++bi) {
    }
    while (ai != a.end() && ai->empty()) ++ai;  // a trailing separator
    if (ai == a.end()) {
        throw InputError(out.string() + ": the output folder is inside the input folder " + in.string() +
                         " (or is it): choose a folder outside it");
    }
}

}  // namespace

Deidentifier::Deidentifier(DeidOptions options) : options_(std::move(options)) {
    if (options_.key.empty()) throw UsageError("the de-identification key is empty");
    if (options_.max_date_shift_days < 1 || options_.max_date_shift_days > 36500) {
        throw UsageError("`max_date_shift_days` must be in 1..36500 (got " +
                         std::to_string(options_.max_date_shift_days) + ")");
    }
    // The pseudonym is a PatientID (LO, 64 characters) and a PatientName (PN: '^' and '=' separate parts).
    const std::string& prefix = options_.patient_id_prefix;
    const bool printable = std::all_of(prefix.begin(), prefix.end(), [](char c) {
        return c > ' ' && c < 127 && c != '\\' && c != '^' && c != '=';
    });
    if (prefix.size() > 54 || !printable) {
        throw UsageError(
            "`patient_id_prefix` must be at most 54 printable characters without spaces, '\\', '^' or '='");
    }
}

std::string Deidentifier::map_uid(const std::string& uid) const {
    const auto digest = keyed_hash(options_.key, "uid", trim_value(uid.c_str()));
    std::array<unsigned char, 16> number{};
    std::copy_n(digest.begin(), number.size(), number.begin());
    // A 2.25 UID is a UUID as an integer (ISO/IEC 9834-8): mark it a version 8 (custom) UUID of the
    // RFC 4122 variant, which leaves 122 bits of the hash. 2.25. + at most 39 digits: under 64 characters.
    number[6] = static_cast<unsigned char>((number[6] & 0x0F) | 0x80);
    number[8] = static_cast<unsigned char>((number[8] & 0x3F) | 0x80);
    return "2.25." + big_decimal(number);
}

int Deidentifier::date_offset_days(const std::string& patient_id) const {
    const auto digest = keyed_hash(options_.key, "date-offset", trim(patient_id));
    std::uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value = (value << 8) | digest[static_cast<size_t>(i)];
    return -static_cast<int>(1 + value % static_cast<std::uint64_t>(options_.max_date_shift_days));
}

std::string Deidentifier::pseudonym(const std::string& patient_id) const {
    const auto digest = keyed_hash(options_.key, "patient-id", trim(patient_id));
    static const char* hex = "0123456789ABCDEF";
    std::string out = options_.patient_id_prefix;
    for (int i = 0; i < 5; ++i) {
        out += hex[digest[static_cast<size_t>(i)] >> 4];
        out += hex[digest[static_cast<size_t>(i)] & 15];
    }
    return out;
}

DeidReport Deidentifier::deidentify_file(const fs::path& in, const fs::path& out, bool allow_burned_in) const {
    const std::string name = in.string();
    std::error_code ec;
    if (!fs::is_regular_file(in, ec)) throw InputError(name + ": no such file");
    if (!is_dicom_file(in)) throw InputError(name + ": not a DICOM file");
    detail::ensure_dcmtk_decoders();  // also silences DCMTK's own logging
    DcmFileFormat file;
    const OFCondition loaded =
        file.loadFile(name.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
    if (loaded.bad()) throw InputError(name + ": cannot read DICOM (" + loaded.text() + ")");
    DcmDataset& ds = *file.getDataset();
    DcmMetaInfo& meta = *file.getMetaInfo();
    if (is_dicomdir(meta, ds)) {
        throw InputError(name + ": is a DICOMDIR (an index of files, which de-identification would break): "
                                "make a new one for the de-identified files");
    }
    check_burned_in(ds, name, allow_burned_in);

    OFString patient_id;
    ds.findAndGetOFString(DCM_PatientID, patient_id);
    DeidReport report;
    report.input = in;
    report.output = out;
    Walk walk{*this, date_offset_days(trim_value(patient_id)), report};
    walk_item(meta, walk, name, false);
    walk_item(ds, walk, name, true);
    add_deid_attributes(ds, name);

    E_TransferSyntax xfer = ds.getOriginalXfer();
    if (xfer == EXS_Unknown) xfer = EXS_LittleEndianExplicit;
    write_atomic_with(out, [&](const fs::path& tmp) {
        // A new file meta header: from the de-identified data set (SOP instance), the transfer syntax and
        // DCMTK's implementation; nothing of the sender's (AE titles, private information) is carried.
        const OFCondition saved = file.saveFile(tmp.string().c_str(), xfer, EET_ExplicitLength, EGL_recalcGL,
                                                EPD_noChange, 0, 0, EWM_createNewMeta);
        if (saved.bad()) throw Error("cannot write " + out.string() + ": " + saved.text());
    });
    return report;
}

std::vector<DeidReport> deidentify_path(const fs::path& in, const fs::path& out, const DeidOptions& options,
                                        bool allow_burned_in, const DeidProgress& progress) {
    const Deidentifier deid(options);
    std::error_code ec;
    if (!fs::exists(in, ec)) throw InputError(in.string() + ": no such file or folder");
    if (!fs::is_directory(in, ec)) {
        const fs::path target = fs::is_directory(out, ec) ? out / in.filename() : out;
        if (fs::exists(target, ec) && fs::equivalent(in, target, ec)) {
            throw InputError(out.string() + ": is the input file: write the de-identified copy elsewhere");
        }
        std::vector<DeidReport> reports{deid.deidentify_file(in, target, allow_burned_in)};
        if (progress) progress(1, 1);
        return reports;
    }
    check_out_not_inside(in, out);
    std::vector<fs::path> todo;
    size_t skipped = 0;
    constexpr size_t kNamedSkips = 20;  // then only counted: a folder of reports must not flood the log
    for (const fs::path& file : files_under(in)) {
        const std::string rel = file.lexically_relative(in).generic_string();
        const bool dicomdir = to_lower(file.filename().string()) == "dicomdir";
        if (!dicomdir && is_dicom_file(file)) {
            todo.push_back(file);
        } else if (++skipped <= kNamedSkips) {
            logger().warn("{}: {}, skipped (not copied)", rel, dicomdir ? "a DICOMDIR (make a new one)" : "not DICOM");
        }
    }
    if (skipped > kNamedSkips) logger().warn("{} files in all skipped (not DICOM or a DICOMDIR)", skipped);
    if (todo.empty()) throw InputError(in.string() + ": no DICOM files found in this folder");
    std::vector<DeidReport> reports;
    reports.reserve(todo.size());
    for (const fs::path& file : todo) {
        reports.push_back(deid.deidentify_file(file, out / file.lexically_relative(in), allow_burned_in));
        if (progress) progress(reports.size(), todo.size());
    }
    return reports;
}

}  // namespace hemoscan

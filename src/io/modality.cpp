#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

ModalityPolicy parse_modality_policy(const std::string& name) {
    const std::string m = to_lower(name);
    if (m == "ct") return ModalityPolicy::CtOnly;
    if (m == "mr" || m == "mri") return ModalityPolicy::MrOnly;
    if (m == "ct+mr" || m == "ct,mr" || m == "mr+ct") return ModalityPolicy::CtOrMr;
    if (m == "any") return ModalityPolicy::Any;
    throw UsageError("unknown modality '" + name + "' (ct, mr, ct+mr, any)");
}

}  // namespace hemoscan

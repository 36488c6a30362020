#pragma once
// Option parsing shared by several subcommands.
#include <string>
#include <vector>

#include "hemoscan/io/dicom.hpp"

namespace hemoscan::cli {

// "ct" (default: CT only), "mr" (CT or MRI), "any".
ModalityPolicy parse_modality(const std::string& name);

// "a,b" -> {"a", "b"} (trimmed, empty items dropped).
std::vector<std::string> parse_list(const std::string& csv);

}  // namespace hemoscan::cli

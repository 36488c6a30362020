#pragma once
// Error types. The CLI maps them to exit codes: InputError -> 1, UsageError -> 2.
#include <stdexcept>
#include <string>

namespace hemoscan {

// Base of every error hemoscan raises on purpose.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Bad input data: corrupt/missing file, wrong modality, malformed CSV. The message names the file
// (and the CSV line where there is one).
class InputError : public Error {
public:
    using Error::Error;
};

// Bad options or arguments from the user (unknown window name, impossible size).
class UsageError : public Error {
public:
    using Error::Error;
};

}  // namespace hemoscan

#pragma once
// One-time DCMTK set-up shared by the DICOM reader and writer (private to src/io; report/ uses it too).
#include <string>


namespace hemoscan::detail {

// Registers DCMTK's decoders (JPEG, JPEG-LS, RLE) once, thread-safely, and silences DCMTK's own
// console logging (the library never prints; problems come back as InputError instead).
void ensure_dcmtk_decoders();

// Registers DCMTK's encoders (JPEG lossless, JPEG-LS, RLE) once, thread-safely.
void ensure_dcmtk_encoders();

// A decimal string (DS) holds at most 16 characters: as many significant digits as fit. Shared with
// the DICOM objects of report/ (SEG, SR, SC).
std::string ds_value(double v);

}  // namespace hemoscan::detail

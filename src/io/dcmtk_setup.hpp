#pragma once
// One-time DCMTK set-up shared by the DICOM reader and writer (private to src/io).

namespace hemoscan::detail {

// Registers DCMTK's decoders (JPEG, JPEG-LS, RLE) once, thread-safely, and silences DCMTK's own
// console logging (the library never prints; problems come back as InputError instead).
void ensure_dcmtk_decoders();

// Registers DCMTK's encoders (JPEG lossless, JPEG-LS, RLE) once, thread-safely.
void ensure_dcmtk_encoders();

}  // namespace hemoscan::detail

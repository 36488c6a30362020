# Every third-party dependency, from Debian 12 packages (scripts/setup.sh installs them).
find_package(Threads REQUIRED)
if(NOT HEMOSCAN_FUZZ)  # the fuzz build (tests/fuzz) compiles no LibTorch code
    find_package(Torch REQUIRED)
endif()
find_package(DCMTK REQUIRED CONFIG)
find_package(CLI11 REQUIRED CONFIG)
find_package(nlohmann_json REQUIRED CONFIG)
find_package(spdlog REQUIRED CONFIG)
find_package(SQLite3 REQUIRED)
find_package(OpenSSL REQUIRED)  # libcrypto: SHA-256 of downloaded weight files
find_package(PkgConfig REQUIRED)
pkg_check_modules(JEMALLOC REQUIRED IMPORTED_TARGET jemalloc)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)  # the tests' HTTP client
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)     # the server (src/serve/http.cpp)
pkg_check_modules(LIBZIP REQUIRED IMPORTED_TARGET libzip)

# Debian splits OpenCV into per-module -dev packages that ship no CMake config; find the three we use.
find_path(OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4 REQUIRED)
foreach(mod core imgproc imgcodecs)
    find_library(OPENCV_${mod}_LIBRARY opencv_${mod} REQUIRED)
    list(APPEND OPENCV_LIBS ${OPENCV_${mod}_LIBRARY})
endforeach()
add_library(hemoscan::opencv INTERFACE IMPORTED)
set_target_properties(hemoscan::opencv PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES ${OPENCV_INCLUDE_DIR} INTERFACE_LINK_LIBRARIES "${OPENCV_LIBS}")

# libnifti2-dev's CMake config is broken: find the libraries directly.
find_path(NIFTI_INCLUDE_DIR nifti1_io.h PATH_SUFFIXES nifti REQUIRED)
find_library(NIFTI_IO_LIBRARY niftiio REQUIRED)
find_library(NIFTI_ZNZ_LIBRARY znz REQUIRED)
find_package(ZLIB REQUIRED)
add_library(hemoscan::nifti INTERFACE IMPORTED)
set_target_properties(hemoscan::nifti PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES ${NIFTI_INCLUDE_DIR}
    INTERFACE_LINK_LIBRARIES "${NIFTI_IO_LIBRARY};${NIFTI_ZNZ_LIBRARY};ZLIB::ZLIB;m")

add_library(hemoscan::dcmtk INTERFACE IMPORTED)
set_target_properties(hemoscan::dcmtk PROPERTIES INTERFACE_LINK_LIBRARIES
    "DCMTK::dcmdata;DCMTK::dcmimgle;DCMTK::dcmimage;DCMTK::dcmjpeg;DCMTK::dcmjpls;DCMTK::ofstd;DCMTK::oflog")
# DICOM objects hemoscan writes (Segmentation, Structured Report: report/) and its network node (serve/).
add_library(hemoscan::dcmtk_objects INTERFACE IMPORTED)
set_target_properties(hemoscan::dcmtk_objects PROPERTIES INTERFACE_LINK_LIBRARIES
    "hemoscan::dcmtk;DCMTK::dcmseg;DCMTK::dcmfg;DCMTK::dcmiod;DCMTK::dcmsr")
add_library(hemoscan::dcmtk_net INTERFACE IMPORTED)
set_target_properties(hemoscan::dcmtk_net PROPERTIES INTERFACE_LINK_LIBRARIES "hemoscan::dcmtk;DCMTK::dcmnet;DCMTK::dcmtls")

add_library(hemoscan::jemalloc INTERFACE IMPORTED)
set_target_properties(hemoscan::jemalloc PROPERTIES INTERFACE_LINK_LIBRARIES PkgConfig::JEMALLOC)
# The library may query allocator settings (mallctl) for diagnostics; the header is enough.
add_library(hemoscan::jemalloc_ctl INTERFACE IMPORTED)
set_target_properties(hemoscan::jemalloc_ctl PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${JEMALLOC_INCLUDE_DIRS}")

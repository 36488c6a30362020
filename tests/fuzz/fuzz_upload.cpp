// Upload harness: what `hemoscan serve` does with an uploaded file once libmicrohttpd's multipart parser
// has spooled it to disk (src/serve/uploads.cpp): sniff the type, expand a zip with its limits, stage the
// entries. The first input byte picks the name and content type the client claimed; the rest is the file.
// A RequestError (the HTTP answer: 400, 413, 415) is as clean an outcome as an InputError.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <typeinfo>

#include "fuzz_support.hpp"
#include "serve/uploads.hpp"

using namespace hemoscan;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::init();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
    if (size == 0) return 0;
    static const char* const kClaims[][2] = {{"upload.zip", "application/zip"}, {"slice.dcm", "application/dicom"},
                                             {"image.png", "image/png"},        {"scan", ""},
                                             {"../../x.jpg", "image/jpeg"},     {"series.zip", ""}};
    const auto& claim = kClaims[data[0] % (sizeof(kClaims) / sizeof(kClaims[0]))];
    const std::filesystem::path file = fuzz::write_input("part_0001", data + 1, size - 1);
    const std::filesystem::path staging = fuzz::scratch_dir() / "staging";
    std::error_code ec;
    std::filesystem::remove_all(staging, ec);
    std::filesystem::create_directories(staging);
    serve::UploadLimits limits;
    limits.max_files = 64;
    limits.max_unzipped_bytes = size_t(16) << 20;
    fuzz::expect_clean("stage_uploads", [&] {
        try {
            const serve::StagedUpload up = serve::stage_uploads({{claim[0], claim[1], file}}, staging, limits);
            // Every staged file lies in the staging folder, under a name the server made.
            for (const auto* list : {&up.images, &up.dicoms}) {
                for (const auto& f : *list) {
                    if (f.path.parent_path() != staging || f.path.filename().string().rfind("upload_", 0) != 0) {
                        std::fprintf(stderr, "fuzz finding: staged outside the folder: %s\n", f.path.c_str());
                        std::abort();
                    }
                }
            }
        } catch (const serve::RequestError& e) {
            if (e.status() != 400 && e.status() != 413 && e.status() != 415) {
                std::fprintf(stderr, "fuzz finding: stage_uploads answered %d: %s\n", e.status(), e.what());
                std::abort();
            }
        }
    });
    return 0;
}

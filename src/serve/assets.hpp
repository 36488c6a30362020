#pragma once
// The page's files (web/ and the npm assets it needs), embedded into the binary at build time by
// web/embed.cmake: the server reads nothing from disk and fetches nothing from a CDN.
#include <cstddef>
#include <string>

namespace hemoscan::serve {

struct Asset {
    const char* path;          // URL path below /assets/ ("app.js"), or "index.html"
    const char* content_type;
    const unsigned char* data;
    std::size_t size;
};

// nullptr when there is no such asset.
const Asset* find_asset(const std::string& path);

}  // namespace hemoscan::serve

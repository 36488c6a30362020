#include "serve/assets.hpp"

namespace hemoscan::serve {

// Defined in the generated web_assets.cpp (web/embed.cmake).
extern const Asset kWebAssets[];
extern const std::size_t kWebAssetCount;

const Asset* find_asset(const std::string& path) {
    for (std::size_t i = 0; i < kWebAssetCount; ++i) {
        if (path == kWebAssets[i].path) return &kWebAssets[i];
    }
    return nullptr;
}

}  // namespace hemoscan::serve

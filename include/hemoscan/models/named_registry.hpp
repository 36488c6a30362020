#pragma once
// The one lookup behind both model registries (classification: registry.hpp, segmentation:
// seg_registry.hpp): architectures by name, in the order they were registered (the default first).
// Free of LibTorch: the factory type is the caller's.
#include <string>
#include <utility>
#include <vector>

#include "hemoscan/error.hpp"

namespace hemoscan {

template <typename Info, typename Factory>
class NamedRegistry {
public:
    struct Entry {
        Info info;  // has a `name` member
        Factory make;
    };

    // `kind` names the registry in errors: "unknown <kind> 'x' (known: a, b)".
    NamedRegistry(std::string kind, std::vector<Entry> entries) : kind_(std::move(kind)), entries_(std::move(entries)) {}

    const Entry& find(const std::string& name) const {
        for (const auto& e : entries_)
            if (e.info.name == name) return e;
        throw UsageError("unknown " + kind_ + " '" + name + "' (known: " + known_names() + ")");
    }
    bool contains(const std::string& name) const {
        for (const auto& e : entries_)
            if (e.info.name == name) return true;
        return false;
    }
    std::vector<Info> infos() const {
        std::vector<Info> out;
        for (const auto& e : entries_) out.push_back(e.info);
        return out;
    }
    std::string known_names() const {
        std::string names;
        for (const auto& e : entries_) names += (names.empty() ? "" : ", ") + e.info.name;
        return names;
    }

private:
    std::string kind_;
    std::vector<Entry> entries_;
};

}  // namespace hemoscan

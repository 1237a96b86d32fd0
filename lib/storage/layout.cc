// layout.cc: see layout.hh.
#include "storage/layout.hh"

#include <cstdlib>

#include "util/error.hh"

namespace ch::storage {

StorageDir storage_dir(const std::optional<fs::path>& option) {
    if (option)
        return {*option, "-s"};
    if (const char* env = std::getenv("CH_IMAGE_STORAGE"); env != nullptr && *env != '\0') {
        if (env[0] != '/')
            fail("$CH_IMAGE_STORAGE must be an absolute path: ", env);
        return {env, "$CH_IMAGE_STORAGE"};
    }
    const char* user = std::getenv("USER");
    if (user == nullptr || *user == '\0')
        fail("$USER not set");
    return {cat("/var/tmp/", user, ".ch"), "default"};
}

std::string ref_to_dirname(std::string_view ref) {
    std::string out(ref);
    for (auto& c : out) {
        if (c == '/')
            c = '%';
        else if (c == ':')
            c = '+';
    }
    return out;
}

std::string dirname_to_ref(std::string_view name) {
    std::string out(name);
    for (auto& c : out) {
        if (c == '%')
            c = '/';
        else if (c == '+')
            c = ':';
    }
    return out;
}

fs::path images_dir(const fs::path& storage) { return storage / "img"; }

fs::path image_dir(const fs::path& storage, std::string_view ref) {
    return images_dir(storage) / ref_to_dirname(ref);
}

fs::path default_mount_dir(const fs::path& storage) { return storage / "mnt"; }

} // namespace ch::storage

// layout.hh: where things live in the storage directory, following
// Charliecloud: STORAGE/img/NAME holds unpacked images, with '/' and ':' in
// the reference written as '%' and '+'.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace ch::storage {

namespace fs = std::filesystem;

// Where the storage directory is, and why: -s, else $CH_IMAGE_STORAGE (must
// be absolute), else /var/tmp/$USER.ch.
struct StorageDir {
    fs::path path;
    std::string source; // "-s", "$CH_IMAGE_STORAGE", "default"
};
StorageDir storage_dir(const std::optional<fs::path>& option);

// "debian:12" -> "debian+12", "a/b" -> "a%b".
std::string ref_to_dirname(std::string_view ref);
std::string dirname_to_ref(std::string_view name);

fs::path images_dir(const fs::path& storage); // STORAGE/img
fs::path image_dir(const fs::path& storage, std::string_view ref);
fs::path default_mount_dir(const fs::path& storage);

} // namespace ch::storage

// layout.hh: the storage directory, its names and who may own it. Following
// Charliecloud, STORAGE/img/NAME holds unpacked images, with '/' and ':' in
// the reference written as '%' and '+', and STORAGE/mnt is ch-run's default
// SquashFS mount point. Every path into storage is made here, and nothing in
// storage is used before its owner and mode are checked: the default storage
// lives in /var/tmp, where any user can plant a directory first.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <sys/stat.h>
#include <sys/types.h>

#include "util/fd.hh"

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

// Whether ref can name an image in storage: not empty, not absolute, no
// empty, "." or ".." component (so "." and ".." never resolve to img/ or
// STORAGE itself), and no leading '.' (staging names start with one).
bool is_image_name(std::string_view ref);
// ref's directory name under STORAGE/img; throws Error if ref can't be a name.
std::string image_dirname(std::string_view ref);

fs::path images_dir(const fs::path& storage);                      // STORAGE/img
fs::path image_dir(const fs::path& storage, std::string_view ref); // checked name
fs::path mount_dir(const fs::path& storage);                       // STORAGE/mnt

// Why a storage directory (STORAGE, img/ or mnt/) with this lstat must not be
// used by uid: a symlink, not a directory, owned by someone else, or writable
// by group or others. nullopt if it may be used.
std::optional<std::string> trust_problem(const struct stat& st, uid_t uid);

// lstat path and throw Error if it can't be trusted, naming its owner and
// what to do; what is "storage directory", "storage's img/", ... Returns
// false if path does not exist.
bool check_trusted(const fs::path& path, uid_t uid, std::string_view what);

// For ch-run IMAGE: STORAGE/img/NAME if ref is a name and that directory
// exists. Storage and img/ are checked first (Error if untrusted); a missing
// storage holds no image.
std::optional<fs::path> find_image(const fs::path& storage, std::string_view ref);

// STORAGE/img, for writing an image: STORAGE and img/ are created (mode 0700)
// if missing and checked either way.
fs::path prepare_images_dir(const fs::path& storage);

// STORAGE/mnt, ch-run's default SquashFS mount point, created (0700) with
// STORAGE if missing and checked either way.
fs::path prepare_mount_dir(const fs::path& storage);

// Open name under dirfd as an O_PATH directory without following a symlink,
// and check it as check_trusted does, through the descriptor: what is checked
// is what is used. shown is the path for messages; uid is the owner as this
// process sees it (inside a user namespace, the mapped id). Throws Error.
Fd open_trusted_dir(int dirfd, const fs::path& name, const fs::path& shown, uid_t uid);

} // namespace ch::storage

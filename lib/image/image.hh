// image.hh: what an IMAGE argument names: a directory, a SquashFS file, or an
// image in storage by name (Charliecloud's image_type order).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace ch::image {

namespace fs = std::filesystem;

enum class Kind { directory, squash, name };

struct Image {
    Kind kind = Kind::directory;
    fs::path path;   // the directory or file on the host
    std::string ref; // as the user gave it
};

// Throws Error naming ref when it is missing or of an unknown type, or when
// it is a directory inside storage (unless unsafe: run those by name).
Image resolve_image(std::string_view ref, const fs::path& storage, bool unsafe);

// SquashFS files start with "hsqs" (little-endian 0x73717368).
bool has_squash_magic(int fd);

// Named like a SquashFS file: *.sqfs, *.squashfs, *.squash (as ch-convert
// infers the format). Such a file without the magic is a damaged SquashFS
// file (exit 84), not an unknown kind of image.
bool is_squash_name(std::string_view path);

const char* kind_name(Kind k);

} // namespace ch::image

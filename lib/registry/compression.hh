// compression.hh: what a layer is compressed with, from its first bytes.
// Registries and media types lie (Charliecloud names every layer .tar.gz),
// so the bytes decide.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string_view>

namespace ch::registry {

enum class Compression { none, gzip, zstd, xz, bzip2 };

std::string_view compression_name(Compression); // "none", "gzip", ...
Compression detect_compression(std::span<const std::byte> head);
// Reads the first bytes of path. Throws ch::SysError if it can't.
Compression detect_compression(const std::filesystem::path& path);

} // namespace ch::registry

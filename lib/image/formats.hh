// formats.hh: the sources and sinks of the entry stream that this module
// implements (SquashFS ones are in squash.hh). Each factory opens or creates
// what it needs and throws Error naming the path when it can't. Sinks stage
// their output beside the destination and publish it with one rename at
// commit(); destroying an uncommitted sink removes the staging.
//
// Sources deliver entries as stored (names unnormalised, any type, any mode);
// run them through UnpackRules before a sink. Sinks trust that the rules ran,
// but still never follow a symlink while writing.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "image/entry.hh"

namespace ch::image {

namespace fs = std::filesystem;

// A directory tree, walked with openat(O_NOFOLLOW) in sorted order, parents
// before children. Hard links are found by (dev, inode); sparse files by
// SEEK_DATA/SEEK_HOLE; user.* xattrs are read unless xattrs is false.
// described_as names it in messages (default: the path).
std::unique_ptr<Source> make_dir_source(const fs::path& dir, bool xattrs = true,
                                        std::string described_as = {});

// A tar archive: plain, gzip, zstd, xz or bzip2, detected by content.
std::unique_ptr<Source> make_tar_source(const fs::path& file);

// An image in storage (STORAGE/img/NAME). Throws if there is none.
std::unique_ptr<Source> make_storage_source(const fs::path& storage, std::string_view ref);

// Write a directory tree at dest. Files are owned by the invoking user.
std::unique_ptr<Sink> make_dir_sink(const fs::path& dest);

// Write an image into storage as STORAGE/img/NAME (creating STORAGE/img).
std::unique_ptr<Sink> make_storage_sink(const fs::path& storage, std::string_view ref);

enum class TarCompression { none, gzip, zstd, xz };

// Compression for an output name: *.tar, *.tar.gz or *.tgz, *.tar.zst,
// *.tar.xz; nullopt for anything else.
std::optional<TarCompression> tar_compression_for(std::string_view name);
// "*.tar, *.tar.gz, *.tgz, *.tar.zst, *.tar.xz", for messages.
const char* tar_output_names();

// Write a pax tar archive at dest, compressed as its name says (throws a
// UsageError listing the supported names otherwise).
std::unique_ptr<Sink> make_tar_sink(const fs::path& dest);
// Same, compressed as comp says whatever the name.
std::unique_ptr<Sink> make_tar_sink(const fs::path& dest, TarCompression comp);

} // namespace ch::image

// squash.hh: SquashFS as a source and a sink of the entry stream, both
// in-process with libsquashfs (no mksquashfs/unsquashfs subprocesses).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "image/entry.hh"

namespace ch::image {

namespace fs = std::filesystem;

struct SquashOptions {
    unsigned block_size = 128 * 1024;
    std::string compressor = "gzip"; // as mksquashfs names them: gzip, zstd, xz, lz4, lzo
    unsigned threads = 0;            // compressing threads; 0: one per CPU we may run on (affinity)
};

// Writes a SquashFS file at dest: staged beside it, published by commit().
// Same entries in, same bytes out (sorted directories, fixed superblock time).
std::unique_ptr<Sink> make_squash_sink(const fs::path& dest, const SquashOptions& opts = {});

// The compressors this libsquashfs can write with, by mksquashfs's names
// (Debian's 1.2.0: gzip, lz4, xz, zstd), for --help and error messages.
std::vector<std::string> squash_compressors();

// Reads a SquashFS file. Throws Error (exit 84) if it is not one or is damaged.
std::unique_ptr<Source> make_squash_source(const fs::path& file);

} // namespace ch::image

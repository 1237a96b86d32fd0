// squash.hh: SquashFS as a source and a sink of the entry stream, both
// in-process with libsquashfs (no mksquashfs/unsquashfs subprocesses).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/entry.hh"
#include "image/squash_compressors.hh"

namespace ch::image {

namespace fs = std::filesystem;

struct SquashOptions {
    unsigned block_size = 128 * 1024; // a power of two, squash_min_block to squash_max_block
    std::string compressor = "gzip";  // a name from squash_compressors(); gzip is libdeflate's
    unsigned threads = 0; // compressing threads; 0: one per CPU we may run on (affinity)
    // Blocks in flight, in bytes (see sink_squash.cc): most of the writer's
    // memory. ch-image's pull to a file lowers it, as it holds its fetches
    // and the layers' index alongside.
    std::size_t backlog_bytes = 24u << 20;
};

constexpr unsigned squash_min_block = 4096; // SquashFS's limits on the block size
constexpr unsigned squash_max_block = 1 << 20;

constexpr bool is_squash_block_size(std::uint64_t n) {
    return n >= squash_min_block && n <= squash_max_block && (n & (n - 1)) == 0;
}

// "a power of two from 4K (4096) to 1M (1048576)", for messages.
std::string squash_block_sizes();

// Writes a SquashFS file at dest: staged beside it, published by commit().
// Same entries in, same bytes out (sorted directories, fixed superblock time).
std::unique_ptr<Sink> make_squash_sink(const fs::path& dest, const SquashOptions& opts = {});

// The compressors this build can write with, in the table's order (with
// Debian's libsquashfs 1.2.0: gzip, xz, lz4, zstd), for --help and messages.
std::vector<std::string> squash_compressors();

// What is wrong with opts (an unknown or unavailable compressor, a block
// size that is not a power of two in range), or "" if nothing is.
std::string squash_options_problem(const SquashOptions& opts);

// A block size as people write it: 65536, 64K, 64KiB, 1M, 1MiB (K and M are
// 1024 and 1024^2, either case). nullopt if it isn't a size at all; the
// range is squash_options_problem's to check.
std::optional<std::uint64_t> parse_squash_block_size(std::string_view s);

// Reads a SquashFS file. Throws Error (exit 84) if it is not one or is damaged.
std::unique_ptr<Source> make_squash_source(const fs::path& file);

} // namespace ch::image

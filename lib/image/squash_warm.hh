// squash_warm.hh: which files of a SquashFS image a container's first
// program will read as it starts: the program, its interpreter (the dynamic
// loader), the image's ld.so.cache and the libraries the program names. The
// FUSE server inflates their blocks while ch-run is still building the
// container, on a CPU that would otherwise wait: `ch-run IMG.sqfs --
// /bin/true` spends most of its time inflating the loader and libc, block
// by block, as the loader faults their pages in.
//
// A guess, never a check: a missing file, a script, a static program or a
// damaged ELF header just make the list shorter. Everything read comes from
// the image through squash_image.hh, and the ELF headers through elf.hh, so
// a hostile image gets no more than it would from a read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "image/squash_image.hh"

namespace ch::image::squash {

// At most this much of one file, and of all files together, is guessed.
constexpr std::uint64_t warm_file_max_bytes = 4 << 20;
constexpr std::uint64_t warm_total_max_bytes = 8 << 20;

struct WarmFile {
    std::string path; // as found: "/usr/lib/x86_64-linux-gnu/libc.so.6"
    std::uint64_t size = 0;
    FileLayout layout; // its blocks
};

// Gets an inflated data or fragment block (through the caller's cache).
using WarmBlocks = std::function<std::shared_ptr<const Block>(const BlockKey& key)>;

// Reads len bytes at off of file f (off + len <= f.size) through blocks;
// false if a block is short or missing. Holes read as zeros.
bool read_file_bytes(const WarmFile& f, std::uint32_t block_size, const WarmBlocks& blocks,
                     void* buf, std::size_t len, std::uint64_t off);

// The files to warm for command (argv[0]) in order: the interpreter, the
// libraries, then the program itself. A command without '/' is looked for
// in path (colon-separated, as execvp does); a relative one with '/' is
// not guessed at (the working directory is not known here). Throws nothing
// that a damaged image causes: what can't be read is left out.
std::vector<WarmFile> warm_files(const Image& img, Inflater& inf, const WarmBlocks& blocks,
                                 std::string_view command, std::string_view path);

// The blocks of files to inflate, in order, within warm_file_max_bytes for
// each file and warm_total_max_bytes for all (holes and fragments left out:
// fragments are shared and small).
std::vector<BlockKey> warm_blocks(const std::vector<WarmFile>& files, std::uint32_t block_size);

} // namespace ch::image::squash

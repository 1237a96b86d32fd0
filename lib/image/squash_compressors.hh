// squash_compressors.hh: SquashFS's compressors, by the superblock's
// compression_id and mksquashfs's names. This is the one table of them:
// the writer, the readers, the FUSE server and ch-convert's --help all look
// names up here. Header-only and free of libsquashfs, so that ch-run's
// server can use it without linking the writer's libraries.
#pragma once

#include <string_view>

namespace ch::image {

struct SquashCompressor {
    int id; // SquashFS 4.0's compression_id (squash_io.cc checks libsquashfs agrees)
    std::string_view name;
    // Whether we write it (when libsquashfs can). Not lzma: the kernel has
    // never read it and mksquashfs 4.x no longer writes it.
    bool writable;
};

inline constexpr SquashCompressor squash_compressor_table[] = {
    {1, "gzip", true}, {2, "lzma", false}, {3, "lzo", true},
    {4, "xz", true},   {5, "lz4", true},   {6, "zstd", true},
};

// The level the writer gives gzip: libdeflate's 7, not mksquashfs's 9 (the
// other compressors keep mksquashfs's defaults). Measured on a Debian 12
// minbase tree in 128 KiB blocks: 51.2 MB in 2.3 s of CPU, against 51.1 MB
// in 5.6 s at libdeflate's 9 and 51.8 MB in 14.9 s at zlib's 9, which is
// what mksquashfs writes. So the files stay smaller than mksquashfs's and
// cost 40% of the CPU. The level is written in the compressor options
// record, as mksquashfs -Xcompression-level does; readers ignore it.
inline constexpr unsigned squash_gzip_write_level = 7;

// The name of id, or "" if SquashFS has no compressor with that id. The
// view points to a NUL-terminated literal.
constexpr std::string_view squash_compressor_name(int id) {
    for (const auto& c : squash_compressor_table)
        if (c.id == id)
            return c.name;
    return {};
}

// The id of name, or 0 if SquashFS has no compressor of that name.
constexpr int squash_compressor_id(std::string_view name) {
    for (const auto& c : squash_compressor_table)
        if (c.name == name)
            return c.id;
    return 0;
}

} // namespace ch::image

// squash_gzip.cc: SquashFS's "gzip" compressor on libdeflate. The blocks are
// ordinary zlib streams (RFC 1950: header, deflate data, Adler-32), exactly
// what mksquashfs -comp gzip writes, so every reader, the kernel included,
// reads them; libdeflate only finds them faster than zlib's deflate, in one
// call per block. Levels mean what they mean to mksquashfs (1 fastest, 9 the
// default and smallest), and the compressor options record after the
// superblock is written, and read, as mksquashfs and libsquashfs do.
//
// What this can't do is handed back to libsquashfs's zlib backend by
// make_compressor: a window below 32 KiB (libdeflate always uses 32 KiB)
// and zlib's strategies, which have no counterpart here.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>

#include <libdeflate.h>
#include <sqfs/compressor.h>
#include <sqfs/error.h>
#include <sqfs/io.h>
#include <sqfs/super.h>

#include "image/squash_io.hh"

namespace ch::image::squash {

namespace {

constexpr sqfs_u32 default_level = 9; // mksquashfs's and libsquashfs's default
constexpr sqfs_u16 full_window = 15;  // log2 of 32 KiB, the only window libdeflate uses
constexpr sqfs_u16 known_strategies = 0x1F;

// The options record: a metadata block header (uncompressed flag, size 8)
// and then level (32 bits), window (16) and strategies (16), little endian.
constexpr std::size_t record_size = 2 + 8;
constexpr sqfs_u16 meta_uncompressed = 0x8000;

struct Gzip {
    sqfs_compressor_t base; // first: libsquashfs sees a pointer to it (standard layout)
    libdeflate_compressor* deflate;
    libdeflate_decompressor* inflate;
    sqfs_u32 block_size;
    sqfs_u32 level;
    sqfs_u16 window;     // as recorded; only 15 is ever used to compress
    sqfs_u16 strategies; // as recorded by another writer; never used
    bool compress;
};

static_assert(std::is_standard_layout_v<Gzip>);

Gzip* self(sqfs_compressor_t* c) {
    return reinterpret_cast<Gzip*>(c);
}

const Gzip* self(const sqfs_compressor_t* c) {
    return reinterpret_cast<const Gzip*>(c);
}

sqfs_compressor_t* make(bool compress, sqfs_u32 block_size, sqfs_u32 level, sqfs_u16 window,
                        sqfs_u16 strategies);

void destroy(sqfs_object_t* obj) {
    Gzip* g = reinterpret_cast<Gzip*>(obj);
    libdeflate_free_compressor(g->deflate); // both accept NULL
    libdeflate_free_decompressor(g->inflate);
    delete g;
}

// The block processor gives each worker its own copy: a libdeflate
// (de)compressor holds state for one call at a time.
sqfs_object_t* copy(const sqfs_object_t* obj) {
    const Gzip* g = reinterpret_cast<const Gzip*>(obj);
    return reinterpret_cast<sqfs_object_t*>(
        make(g->compress, g->block_size, g->level, g->window, g->strategies));
}

void get_configuration(const sqfs_compressor_t* c, sqfs_compressor_config_t* cfg) {
    const Gzip* g = self(c);
    std::memset(cfg, 0, sizeof *cfg);
    cfg->id = SQFS_COMP_GZIP;
    cfg->flags =
        static_cast<sqfs_u16>(g->strategies | (g->compress ? 0 : SQFS_COMP_FLAG_UNCOMPRESS));
    cfg->block_size = g->block_size;
    cfg->level = g->level;
    cfg->opt.gzip.window_size = g->window;
}

void put16(unsigned char* p, sqfs_u16 v) {
    p[0] = static_cast<unsigned char>(v);
    p[1] = static_cast<unsigned char>(v >> 8);
}

void put32(unsigned char* p, sqfs_u32 v) {
    put16(p, static_cast<sqfs_u16>(v));
    put16(p + 2, static_cast<sqfs_u16>(v >> 16));
}

sqfs_u16 get16(const unsigned char* p) {
    return static_cast<sqfs_u16>(p[0] | (p[1] << 8));
}

sqfs_u32 get32(const unsigned char* p) {
    return static_cast<sqfs_u32>(get16(p)) | (static_cast<sqfs_u32>(get16(p + 2)) << 16);
}

// Like mksquashfs, the record is written only for non-default settings;
// readers take its absence to mean level 9, 32 KiB window.
int write_options(sqfs_compressor_t* c, sqfs_file_t* file) {
    const Gzip* g = self(c);
    if (g->level == default_level && g->window == full_window && g->strategies == 0)
        return 0;
    unsigned char rec[record_size];
    put16(rec, meta_uncompressed | (record_size - 2));
    put32(rec + 2, g->level);
    put16(rec + 6, g->window);
    put16(rec + 8, g->strategies);
    const int r = file->write_at(file, sizeof(sqfs_super_t), rec, sizeof rec);
    return r < 0 ? r : static_cast<int>(sizeof rec);
}

int read_options(sqfs_compressor_t* c, sqfs_file_t* file) {
    Gzip* g = self(c);
    unsigned char rec[record_size];
    const int r = file->read_at(file, sizeof(sqfs_super_t), rec, sizeof rec);
    if (r < 0)
        return r;
    if (get16(rec) != (meta_uncompressed | (record_size - 2)))
        return SQFS_ERROR_CORRUPTED;
    const sqfs_u32 level = get32(rec + 2);
    const sqfs_u16 window = get16(rec + 6);
    const sqfs_u16 strategies = get16(rec + 8);
    if (level < 1 || level > 9 || window < 8 || window > 15 ||
        (strategies & ~known_strategies) != 0)
        return SQFS_ERROR_UNSUPPORTED;
    g->level = level;
    g->window = window;
    g->strategies = strategies;
    return 0;
}

sqfs_s32 compress_block(Gzip* g, const sqfs_u8* in, sqfs_u32 size, sqfs_u8* out, sqfs_u32 outsize) {
    // A block no smaller than its input is stored raw instead (0 says so):
    // give libdeflate no room for that, and it gives up with 0 on its own.
    const std::size_t room = std::min<std::size_t>(outsize, size > 0 ? size - 1 : 0);
    if (room == 0)
        return 0;
    const std::size_t n = libdeflate_zlib_compress(g->deflate, in, size, out, room);
    return static_cast<sqfs_s32>(n);
}

sqfs_s32 inflate_block(Gzip* g, const sqfs_u8* in, sqfs_u32 size, sqfs_u8* out, sqfs_u32 outsize) {
    std::size_t in_used = 0, out_made = 0;
    // Bytes after the end of the stream are ignored, as zlib's inflate does.
    switch (
        libdeflate_zlib_decompress_ex(g->inflate, in, size, out, outsize, &in_used, &out_made)) {
    case LIBDEFLATE_SUCCESS:
        return static_cast<sqfs_s32>(out_made);
    case LIBDEFLATE_INSUFFICIENT_SPACE:
        return 0; // the interface's "output buffer too small"
    default:
        return SQFS_ERROR_COMPRESSOR;
    }
}

sqfs_s32 do_block(sqfs_compressor_t* c, const sqfs_u8* in, sqfs_u32 size, sqfs_u8* out,
                  sqfs_u32 outsize) {
    Gzip* g = self(c);
    if (size >= 0x7FFFFFFF || outsize >= 0x7FFFFFFF)
        return SQFS_ERROR_ARG_INVALID;
    return g->compress ? compress_block(g, in, size, out, outsize)
                       : inflate_block(g, in, size, out, outsize);
}

sqfs_compressor_t* make(bool compress, sqfs_u32 block_size, sqfs_u32 level, sqfs_u16 window,
                        sqfs_u16 strategies) {
    auto* g = new (std::nothrow) Gzip{};
    if (g == nullptr)
        return nullptr;
    g->base.base.destroy = destroy;
    g->base.base.copy = copy;
    g->base.get_configuration = get_configuration;
    g->base.write_options = write_options;
    g->base.read_options = read_options;
    g->base.do_block = do_block;
    g->block_size = block_size;
    g->level = level;
    g->window = window;
    g->strategies = strategies;
    g->compress = compress;
    if (compress)
        g->deflate = libdeflate_alloc_compressor(static_cast<int>(level));
    else
        g->inflate = libdeflate_alloc_decompressor();
    if (g->deflate == nullptr && g->inflate == nullptr) {
        delete g;
        return nullptr;
    }
    return &g->base;
}

} // namespace

int make_gzip_compressor(const sqfs_compressor_config_t& cfg, sqfs_compressor_t** out) {
    *out = nullptr;
    if (cfg.id != SQFS_COMP_GZIP)
        return SQFS_ERROR_ARG_INVALID;
    const bool compress = !(cfg.flags & SQFS_COMP_FLAG_UNCOMPRESS);
    const sqfs_u16 strategies = cfg.flags & SQFS_COMP_FLAG_GZIP_ALL;
    const sqfs_u16 window = cfg.opt.gzip.window_size;
    if (cfg.level < 1 || cfg.level > 9 || window < 8 || window > 15)
        return SQFS_ERROR_UNSUPPORTED;
    // Decompressing doesn't care how the blocks were made.
    if (compress && (window != full_window || strategies != 0))
        return SQFS_ERROR_UNSUPPORTED;
    *out = make(compress, cfg.block_size, cfg.level, window, strategies);
    return *out == nullptr ? SQFS_ERROR_ALLOC : 0;
}

} // namespace ch::image::squash

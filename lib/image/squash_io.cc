// squash_io.cc: see squash_io.hh.
#include "image/squash_io.hh"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <type_traits>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/squash.hh"
#include "util/error.hh"
#include "util/fd.hh"

namespace ch::image::squash {

namespace {

// sqfs_file_t is the first member, so libsquashfs's pointer to the
// interface is a pointer to the whole object (standard layout).
struct FdFile {
    sqfs_file_t base;
    int fd;
    bool writable;
    std::uint64_t size;
    IoFault fault;
};

static_assert(std::is_standard_layout_v<FdFile>);

FdFile* self(sqfs_file_t* f) {
    return reinterpret_cast<FdFile*>(f);
}

const FdFile* self(const sqfs_file_t* f) {
    return reinterpret_cast<const FdFile*>(f);
}

void remember(FdFile* f, const char* op, std::uint64_t offset, int err) {
    if (f->fault.err == 0)
        f->fault = IoFault{err, op, offset};
}

void destroy_file(sqfs_object_t* obj) {
    FdFile* f = reinterpret_cast<FdFile*>(obj);
    ::close(f->fd);
    delete f;
}

int read_at(sqfs_file_t* file, sqfs_u64 offset, void* buffer, size_t size) {
    FdFile* f = self(file);
    // libsquashfs treats reads past the end as a bad reference: a truncated
    // or corrupted image, not an I/O failure.
    if (offset > f->size || size > f->size - offset)
        return SQFS_ERROR_OUT_OF_BOUNDS;
    auto* p = static_cast<char*>(buffer);
    while (size > 0) {
        const ssize_t n = ::pread(f->fd, p, size, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            remember(f, "read", offset, errno);
            return SQFS_ERROR_IO;
        }
        if (n == 0)
            return SQFS_ERROR_OUT_OF_BOUNDS; // shrank under us
        p += n;
        offset += static_cast<std::uint64_t>(n);
        size -= static_cast<size_t>(n);
    }
    return 0;
}

// The block writer appends, the superblock is rewritten at offset 0 at the
// end, and deduplication truncates a just-written copy away again; the size
// is tracked here rather than asked of the kernel on every append.
int write_at(sqfs_file_t* file, sqfs_u64 offset, const void* buffer, size_t size) {
    FdFile* f = self(file);
    if (!f->writable)
        return SQFS_ERROR_IO;
    const auto* p = static_cast<const char*>(buffer);
    std::uint64_t at = offset;
    while (size > 0) {
        const ssize_t n = ::pwrite(f->fd, p, size, static_cast<off_t>(at));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            remember(f, "write", at, n < 0 ? errno : EIO);
            return SQFS_ERROR_IO;
        }
        p += n;
        at += static_cast<std::uint64_t>(n);
        size -= static_cast<size_t>(n);
    }
    if (at > f->size)
        f->size = at;
    return 0;
}

sqfs_u64 get_size(const sqfs_file_t* file) {
    return self(file)->size;
}

int truncate_to(sqfs_file_t* file, sqfs_u64 size) {
    FdFile* f = self(file);
    if (!f->writable)
        return SQFS_ERROR_IO;
    if (::ftruncate(f->fd, static_cast<off_t>(size)) != 0) {
        remember(f, "truncate", size, errno);
        return SQFS_ERROR_IO;
    }
    f->size = size;
    return 0;
}

// A compressor that delegates to libsquashfs's, except that it never
// returns a "compressed" block at least as large as the input (0 tells the
// caller to store the block raw). Standard layout, interface first, as
// FdFile.
struct Shrinking {
    sqfs_compressor_t base;
    sqfs_compressor_t* inner;
    bool compress; // false: a decompressor, passed through
};

static_assert(std::is_standard_layout_v<Shrinking>);

Shrinking* self(sqfs_compressor_t* c) {
    return reinterpret_cast<Shrinking*>(c);
}

const Shrinking* self(const sqfs_compressor_t* c) {
    return reinterpret_cast<const Shrinking*>(c);
}

sqfs_compressor_t* wrap(sqfs_compressor_t* inner, bool compress);

void destroy_shrinking(sqfs_object_t* obj) {
    Shrinking* s = reinterpret_cast<Shrinking*>(obj);
    sqfs_destroy(s->inner);
    delete s;
}

sqfs_object_t* copy_shrinking(const sqfs_object_t* obj) {
    // The block processor gives each worker thread its own copy.
    const Shrinking* s = reinterpret_cast<const Shrinking*>(obj);
    auto* inner = static_cast<sqfs_compressor_t*>(sqfs_copy(s->inner));
    if (inner == nullptr)
        return nullptr;
    return reinterpret_cast<sqfs_object_t*>(wrap(inner, s->compress));
}

void get_configuration(const sqfs_compressor_t* c, sqfs_compressor_config_t* cfg) {
    self(c)->inner->get_configuration(self(c)->inner, cfg);
}

int write_options(sqfs_compressor_t* c, sqfs_file_t* file) {
    return self(c)->inner->write_options(self(c)->inner, file);
}

int read_options(sqfs_compressor_t* c, sqfs_file_t* file) {
    return self(c)->inner->read_options(self(c)->inner, file);
}

sqfs_s32 do_block(sqfs_compressor_t* c, const sqfs_u8* in, sqfs_u32 size, sqfs_u8* out,
                  sqfs_u32 outsize) {
    sqfs_compressor_t* inner = self(c)->inner;
    const sqfs_s32 r = inner->do_block(inner, in, size, out, outsize);
    if (self(c)->compress && r > 0 && static_cast<sqfs_u32>(r) >= size)
        return 0;
    return r;
}

sqfs_compressor_t* wrap(sqfs_compressor_t* inner, bool compress) {
    auto* s = new (std::nothrow) Shrinking{};
    if (s == nullptr) {
        sqfs_destroy(inner);
        return nullptr;
    }
    s->base.base.destroy = destroy_shrinking;
    s->base.base.copy = copy_shrinking;
    s->base.get_configuration = get_configuration;
    s->base.write_options = write_options;
    s->base.read_options = read_options;
    s->base.do_block = do_block;
    s->inner = inner;
    s->compress = compress;
    return &s->base;
}

} // namespace

int make_compressor(const sqfs_compressor_config_t& cfg, Ptr<sqfs_compressor_t>& out) {
    sqfs_compressor_t* inner = nullptr;
    if (cfg.id == SQFS_COMP_GZIP) {
        const int r = make_gzip_compressor(cfg, &inner);
        if (r != SQFS_ERROR_UNSUPPORTED) {
            if (r == 0)
                out.reset(inner);
            return r;
        }
    }
    const int r = sqfs_compressor_create(&cfg, &inner);
    if (r != 0)
        return r;
    sqfs_compressor_t* c = wrap(inner, !(cfg.flags & SQFS_COMP_FLAG_UNCOMPRESS));
    if (c == nullptr)
        return SQFS_ERROR_ALLOC;
    out.reset(c);
    return 0;
}

Ptr<sqfs_file_t> open_file(const fs::path& path, Access access) {
    const bool w = access == Access::write;
    Fd fd = open_at(AT_FDCWD, path, w ? (O_RDWR | O_TRUNC) : O_RDONLY);

    struct stat st {};

    if (::fstat(fd.get(), &st) != 0)
        throw_errno("can't stat ", path.string());
    if (!w && !S_ISREG(st.st_mode))
        fail("can't read ", path.string(), ": not a regular file");
    auto* f = new FdFile{};
    f->base.base.destroy = destroy_file;
    f->base.base.copy = nullptr; // a shared offset-free fd could be copied, but nothing needs it
    f->base.read_at = read_at;
    f->base.write_at = write_at;
    f->base.get_size = get_size;
    f->base.truncate = truncate_to;
    f->fd = fd.release();
    f->writable = w;
    f->size = w ? 0 : static_cast<std::uint64_t>(st.st_size);
    return Ptr<sqfs_file_t>(&f->base);
}

const IoFault& fault_of(const sqfs_file_t* f) {
    return self(f)->fault;
}

std::string error_words(int code) {
    switch (code) {
    case SQFS_ERROR_ALLOC:
        return "out of memory";
    case SQFS_ERROR_IO:
        return "I/O error";
    case SQFS_ERROR_COMPRESSOR:
        return "compressor failed (corrupted data?)";
    case SQFS_ERROR_INTERNAL:
        return "internal error in libsquashfs";
    case SQFS_ERROR_CORRUPTED:
        return "corrupted";
    case SQFS_ERROR_UNSUPPORTED:
        return "uses a feature libsquashfs does not support";
    case SQFS_ERROR_OVERFLOW:
        return "size overflow (corrupted?)";
    case SQFS_ERROR_OUT_OF_BOUNDS:
        return "reference beyond the end of a table or the file (truncated or corrupted)";
    case SFQS_ERROR_SUPER_MAGIC:
        return "not a SquashFS file (bad magic)";
    case SFQS_ERROR_SUPER_VERSION:
        return "unsupported SquashFS version (only 4.0 is supported)";
    case SQFS_ERROR_SUPER_BLOCK_SIZE:
        return "corrupted superblock (invalid block size)";
    case SQFS_ERROR_NOT_DIR:
        return "not a directory";
    case SQFS_ERROR_NO_ENTRY:
        return "no such entry";
    case SQFS_ERROR_LINK_LOOP:
        return "hard link loop";
    case SQFS_ERROR_NOT_FILE:
        return "not a regular file";
    case SQFS_ERROR_ARG_INVALID:
        return "invalid argument to libsquashfs";
    case SQFS_ERROR_SEQUENCE:
        return "libsquashfs calls out of sequence";
    default:
        return cat("libsquashfs error ", code);
    }
}

std::string error_words(int code, const sqfs_file_t* file) {
    if (code == SQFS_ERROR_IO && file != nullptr) {
        const IoFault& f = fault_of(file);
        if (f.err != 0)
            return cat(f.op, " failed at offset ", f.offset, ": ", std::strerror(f.err));
    }
    return error_words(code);
}

std::string compressor_name(int id) {
    const std::string_view n = squash_compressor_name(id);
    return n.empty() ? cat("unknown compressor ", id) : std::string(n);
}

} // namespace ch::image::squash

namespace ch::image {

static_assert(squash_compressor_id("gzip") == SQFS_COMP_GZIP &&
              squash_compressor_id("lzma") == SQFS_COMP_LZMA &&
              squash_compressor_id("lzo") == SQFS_COMP_LZO &&
              squash_compressor_id("xz") == SQFS_COMP_XZ &&
              squash_compressor_id("lz4") == SQFS_COMP_LZ4 &&
              squash_compressor_id("zstd") == SQFS_COMP_ZSTD);

std::vector<std::string> squash_compressors() {
    std::vector<std::string> out;
    for (const auto& t : squash_compressor_table) {
        if (!t.writable)
            continue;
        sqfs_compressor_config_t cfg{};
        if (sqfs_compressor_config_init(&cfg, static_cast<SQFS_COMPRESSOR>(t.id),
                                        SQFS_DEFAULT_BLOCK_SIZE, 0) != 0)
            continue;
        squash::Ptr<sqfs_compressor_t> c;
        if (squash::make_compressor(cfg, c) == 0)
            out.emplace_back(t.name);
    }
    return out;
}

std::string squash_block_sizes() {
    return cat("a power of two from 4K (", squash_min_block, ") to 1M (", squash_max_block, ")");
}

std::string squash_options_problem(const SquashOptions& opts) {
    if (!is_squash_block_size(opts.block_size))
        return cat("invalid block size ", opts.block_size, " (", squash_block_sizes(), ")");
    const auto comps = squash_compressors();
    if (std::find(comps.begin(), comps.end(), opts.compressor) != comps.end())
        return {};
    return cat(squash_compressor_id(opts.compressor) != 0 ? "this build can't compress with '"
                                                          : "unknown compressor '",
               printable(opts.compressor), "' (it can with: ", join(comps, ", "), ")");
}

std::optional<std::uint64_t> parse_squash_block_size(std::string_view s) {
    // Saturates far beyond any block size (nothing below can overflow), so
    // that a huge number is a size, just not a valid one.
    constexpr std::uint64_t huge = std::uint64_t{1} << 40;
    std::uint64_t n = 0;
    std::size_t i = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i)
        n = std::min(huge, n * 10 + static_cast<unsigned>(s[i] - '0'));
    if (i == 0)
        return std::nullopt;
    const std::string_view unit = s.substr(i);
    if (unit.empty())
        return n;
    const char u = unit[0];
    const std::string_view rest = unit.substr(1);
    if (!rest.empty() && rest != "iB")
        return std::nullopt;
    if (u == 'K' || u == 'k')
        return n << 10;
    if (u == 'M' || u == 'm')
        return n << 20;
    return std::nullopt;
}

} // namespace ch::image

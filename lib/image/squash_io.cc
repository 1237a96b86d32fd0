// squash_io.cc: see squash_io.hh.
#include "image/squash_io.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <type_traits>

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

FdFile* self(sqfs_file_t* f) { return reinterpret_cast<FdFile*>(f); }
const FdFile* self(const sqfs_file_t* f) { return reinterpret_cast<const FdFile*>(f); }

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

sqfs_u64 get_size(const sqfs_file_t* file) { return self(file)->size; }

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

Shrinking* self(sqfs_compressor_t* c) { return reinterpret_cast<Shrinking*>(c); }
const Shrinking* self(const sqfs_compressor_t* c) { return reinterpret_cast<const Shrinking*>(c); }

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

sqfs_s32 do_block(sqfs_compressor_t* c, const sqfs_u8* in, sqfs_u32 size, sqfs_u8* out, sqfs_u32 outsize) {
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

const IoFault& fault_of(const sqfs_file_t* f) { return self(f)->fault; }

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

int compressor_id(const std::string& name) {
    // sqfs_compressor_id_from_name knows the same names, but also accepts
    // whatever a later libsquashfs adds; spelling them out keeps the list in
    // one place for --help and the man page.
    static const struct {
        const char* name;
        int id;
    } table[] = {{"gzip", SQFS_COMP_GZIP}, {"lzma", SQFS_COMP_LZMA}, {"lzo", SQFS_COMP_LZO},
                 {"xz", SQFS_COMP_XZ},     {"lz4", SQFS_COMP_LZ4},   {"zstd", SQFS_COMP_ZSTD}};
    for (const auto& t : table)
        if (name == t.name)
            return t.id;
    return 0;
}

std::string compressor_name(int id) {
    const char* n = sqfs_compressor_name_from_id(static_cast<SQFS_COMPRESSOR>(id));
    return n != nullptr ? n : cat("unknown compressor ", id);
}

} // namespace ch::image::squash

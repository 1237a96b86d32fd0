// squash_image.hh: a SquashFS image opened and checked, and the one decoder
// of its metadata that everything else uses: the FUSE server
// (squash_serve.cc), ch-run's look into the image (SquashFile) and
// ch-convert's squash source. Images are untrusted: nothing the image says is
// believed before it is checked here, so a damaged or hostile image gives a
// SquashError naming what is wrong, never a read outside a buffer, an
// allocation the image chose, or a loop.
//
// What comes from libsquashfs (squashfs-tools-ng): the superblock parser
// (sqfs_super_read: magic, version, block size a power of two from 4 KiB to
// 1 MiB agreeing with block_log, compressor id, id count; checked here as
// well, to say which), the on-disk structs and constants, and the
// decompressors other than gzip. gzip (zlib
// streams) is inflated with libdeflate. Inodes, directory listings and
// xattrs are decoded here, through a metadata block cache shared by all
// threads, because libsquashfs's decoders allocate what the image declares
// (a file's block list from its size, a directory index from its names, an
// xattr value from its length) before anyone can check it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "image/squash_cache.hh"
#include "util/error.hh"
#include "util/fd.hh"

struct libdeflate_decompressor;
struct sqfs_compressor_t;

namespace ch::image::squash {

namespace fs = std::filesystem;

// Limits on what an image may declare. Beyond them an image is refused as
// damaged (legitimate images stay far below), so memory stays bounded.
constexpr std::size_t max_name = 256;            // a directory entry's name (SquashFS's own limit)
constexpr std::size_t max_symlink = 4095;        // a symlink's target (PATH_MAX less its NUL)
constexpr std::size_t max_file_blocks = 1 << 22; // a file's block list: 16 MiB of it at most
constexpr std::size_t max_xattr_bytes = 65536;   // all names and values of one inode
constexpr std::uint32_t max_fragments = 1 << 22; // fragment table entries (64 MiB of table)
constexpr std::uint32_t max_xattr_ids = 1 << 22; // xattr id table entries
constexpr std::size_t meta_block_size = 8192;    // SquashFS metadata blocks, uncompressed
constexpr std::uint32_t no_index = 0xFFFFFFFF;   // "no fragment", "no xattrs"

// A damaged or hostile image. The message says what is wrong, without the
// file's name (callers add "can't mount IMG: " or "can't read IMG: ").
class SquashError : public Error {
public:
    explicit SquashError(std::string msg)
        : Error(std::move(msg), Exit::squash) {}
};

class Image;

// Inflates blocks. One per thread: libdeflate's and libsquashfs's
// decompressors keep state.
class Inflater {
public:
    explicit Inflater(const Image& img);
    Inflater(const Inflater&) = delete;
    Inflater& operator=(const Inflater&) = delete;
    ~Inflater();
    // Inflates in (n bytes) into out; throws SquashError if it is not a
    // valid stream or would inflate to more than cap bytes.
    std::size_t inflate(const void* in, std::size_t n, void* out, std::size_t cap);

private:
    int comp_;
    libdeflate_decompressor* deflate_ = nullptr;
    sqfs_compressor_t* other_ = nullptr;
};

// An inode, decoded and checked.
struct Inode {
    std::uint64_t ref = 0; // where it is: (metadata block << 16) | offset
    int type = 0;          // SQFS_INODE_*
    mode_t mode = 0;       // with the S_IFMT bits
    std::uint32_t uid = 0; // from the id table
    std::uint32_t gid = 0;
    std::uint32_t mtime = 0;
    std::uint32_t number = 0; // inode number
    std::uint32_t nlink = 1;
    std::uint32_t xattr = no_index;
    // directories: where the listing is, and its length in bytes
    std::uint64_t dir_block = 0; // relative to the directory table
    std::uint32_t dir_offset = 0;
    std::uint32_t dir_size = 0;
    std::uint32_t parent = 0;
    // regular files
    std::uint64_t size = 0;
    std::uint64_t blocks_start = 0;
    std::uint32_t frag = no_index;
    std::uint32_t frag_offset = 0;
    std::vector<std::uint32_t> blocks; // size headers (0: a hole)
    // symlinks
    std::string target;
    // devices
    std::uint32_t devno = 0;

    bool is_dir() const;
    bool is_file() const;
    bool is_symlink() const;
};

struct DirEntry {
    std::string name;
    std::uint64_t ref = 0;    // the inode
    std::uint32_t number = 0; // its inode number
    mode_t type = 0;          // S_IFMT bits from the entry
    std::uint32_t next = 0;   // byte offset in the listing after this entry
};

struct Xattr {
    std::string name; // with its prefix: "user.", "trusted.", "security."
    std::string value;
};

// A fragment table entry, checked: its block lies in the image.
struct Fragment {
    BlockKey key;
};

// Where a file's data is, checked: every block inside the data area. Kept
// compact (4 bytes a block, and where every 64th block starts), since an
// open file holds it for as long as it is open.
struct FileLayout {
    std::vector<std::uint32_t> hdrs;   // each block's size header (size 0: a hole)
    std::vector<std::uint64_t> starts; // where blocks 0, 64, 128, ... start in the image
    bool has_tail = false;             // the end of the file is in a fragment
    BlockKey tail;
    std::uint32_t tail_offset = 0;

    std::size_t count() const { return hdrs.size(); }

    // Block i (< count()): its key, or {0, 0} for a hole.
    BlockKey block(std::size_t i) const;
};

// One piece of a read from a file: len bytes at offset at of the block at
// key, or of zeros (a hole, which SquashFS does not store).
struct FileSpan {
    bool hole = false;
    BlockKey key;
    std::size_t at = 0;
    std::size_t len = 0;
};

// Where the bytes [off, off + len) of a file of size bytes laid out as l are
// (off + len <= size): full blocks and holes from the layout, the tail from
// its fragment, appended to out. Returns the index of the block after the
// last one read. Throws SquashError if the layout has too few blocks for
// size. The caller checks each block's inflated size against its span.
std::uint64_t file_spans(const FileLayout& l, std::uint64_t size, std::uint64_t block_size,
                         std::uint64_t off, std::size_t len, std::vector<FileSpan>& out);

// An opened SquashFS file. Thread-safe after open(): every member function
// may be called from any thread, each with its own Inflater.
class Image {
public:
    // Checks the superblock and the tables, and reads the root directory.
    // Throws SysError (can't open) or SquashError (what is wrong).
    static std::shared_ptr<Image> open(const fs::path& path,
                                       std::size_t meta_cache_bytes = 4 << 20);
    // The same, from a descriptor open on the file (kept; read with pread).
    static std::shared_ptr<Image> open(Fd fd, std::size_t meta_cache_bytes = 4 << 20);

    Image(const Image&) = delete;
    Image& operator=(const Image&) = delete;
    ~Image();

    int fd() const { return fd_.get(); }

    std::uint32_t block_size() const { return block_size_; }

    std::uint64_t bytes_used() const { return bytes_used_; }

    std::uint32_t inode_count() const { return inodes_; }

    std::uint64_t root_ref() const { return root_ref_; }

    int compressor() const { return comp_; }

    bool has_xattrs() const { return xattr_ids_ != 0; }

    Inode inode(std::uint64_t ref, Inflater& inf) const;
    // The directory's entries from byte offset `from` of its listing, until
    // fn(entry) returns false. Names are checked (not empty, no '/', not .
    // or .., at most max_name bytes, no NUL) and so are inode references.
    template <typename Fn>
    void list(const Inode& dir, std::uint32_t from, Inflater& inf, Fn&& fn) const;
    // The entry named name in dir, or false.
    bool lookup(const Inode& dir, std::string_view name, Inflater& inf, DirEntry& out) const;
    // The inode at path, resolving ".." (never above the root) and symlinks
    // (absolute ones from the image's root, at most 40), as resolve_in_root
    // does for a directory image; false if a component is missing.
    bool resolve(std::string_view path, Inflater& inf, Inode& out) const;
    std::vector<Xattr> xattrs(const Inode& in, Inflater& inf) const;
    Fragment fragment(std::uint32_t index, Inflater& inf) const;
    FileLayout layout(const Inode& file, Inflater& inf) const;
    // Reads and inflates the data block at key into out (cap >= block_size).
    std::size_t read_block(const BlockKey& key, char* out, std::size_t cap, Inflater& inf) const;

private:
    friend class Inflater;
    friend class MetaCursor;
    Image() = default;
    void check_super(std::uint64_t file_size);
    void load_tables();
    void list_impl(const Inode& dir, std::uint32_t from, Inflater& inf,
                   const std::function<bool(const DirEntry&)>& fn) const;
    std::shared_ptr<const Block> meta_block(std::uint64_t pos, std::uint64_t limit,
                                            Inflater& inf) const;
    void pread_exact(void* buf, std::size_t n, std::uint64_t at) const;

    Fd fd_;
    std::uint64_t file_size_ = 0;
    std::uint64_t bytes_used_ = 0;
    std::uint32_t block_size_ = 0;
    std::uint32_t inodes_ = 0;
    int comp_ = 0;
    std::uint64_t root_ref_ = 0;
    std::uint64_t inode_start_ = 0, inode_end_ = 0; // [start, end) of each table
    std::uint64_t dir_start_ = 0, dir_end_ = 0;
    std::uint64_t data_end_ = 0; // data blocks lie in [96, data_end_)
    std::uint32_t fragments_ = 0;
    std::vector<std::uint64_t> fragment_blocks_; // where each metadata block of the table is
    std::uint64_t frag_meta_lo_ = 0, frag_meta_hi_ = 0;
    std::vector<std::uint32_t> ids_;
    std::uint32_t xattr_ids_ = 0;
    std::vector<std::uint64_t> xattr_id_blocks_;
    std::uint64_t xattr_kv_start_ = 0, xattr_kv_end_ = 0;
    mutable std::unique_ptr<BlockCache> meta_;
};

template <typename Fn>
void Image::list(const Inode& dir, std::uint32_t from, Inflater& inf, Fn&& fn) const {
    list_impl(dir, from, inf, std::function<bool(const DirEntry&)>(std::forward<Fn>(fn)));
}

} // namespace ch::image::squash

// squash_image.cc: see squash_image.hh. Every number read from the image is
// checked here before it is used as a size, an offset or an index; the
// checks are listed where they happen, and test/unit/image/squash_image_test.cc
// builds an image with each flaw.
#include "image/squash_image.hh"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <deque>
#include <type_traits>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libdeflate.h>
#include <sqfs/block.h>
#include <sqfs/compressor.h>
#include <sqfs/dir.h>
#include <sqfs/error.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/super.h>
#include <sqfs/xattr.h>

#include "image/squash_compressors.hh"
#include "util/strings.hh"

namespace ch::image::squash {

namespace {

constexpr std::uint64_t no_table = ~std::uint64_t{0};
constexpr std::uint32_t uncompressed_data = 1U << 24; // in a data block's size header
constexpr std::uint16_t uncompressed_meta = 0x8000;   // in a metadata block's header
constexpr std::size_t super_size = sizeof(sqfs_super_t);
constexpr std::uint32_t max_dir_run = 256; // entries per directory header (the kernel's limit)

static_assert(sizeof(sqfs_super_t) == 96);
static_assert(std::endian::native == std::endian::little,
              "SquashFS is little endian; this reader decodes in place");

[[noreturn]] void corrupt(const std::string& why) {
    throw SquashError(why);
}

// The names are string literals in the one table, so data() ends in a NUL.
const char* compressor_words(int id) {
    const std::string_view n = squash_compressor_name(id);
    return n.empty() ? nullptr : n.data();
}

sqfs_compressor_t* make_decompressor(int comp, std::uint32_t block_size) {
    sqfs_compressor_config_t cfg{};
    if (sqfs_compressor_config_init(&cfg, static_cast<SQFS_COMPRESSOR>(comp), block_size,
                                    SQFS_COMP_FLAG_UNCOMPRESS) != 0)
        return nullptr;
    sqfs_compressor_t* c = nullptr;
    if (sqfs_compressor_create(&cfg, &c) != 0)
        return nullptr;
    return c;
}

// The superblock through libsquashfs's parser needs an sqfs_file_t: a view
// of our descriptor that reads the first bytes only.
struct SuperView {
    sqfs_file_t base;
    const sqfs_super_t* raw;
};

static_assert(std::is_standard_layout_v<SuperView>);

int view_read(sqfs_file_t* f, sqfs_u64 off, void* buf, size_t n) {
    const auto* v = reinterpret_cast<const SuperView*>(f);
    if (off > super_size || n > super_size - off)
        return SQFS_ERROR_OUT_OF_BOUNDS;
    std::memcpy(buf, reinterpret_cast<const char*>(v->raw) + off, n);
    return 0;
}

int libsquashfs_super_check(const sqfs_super_t& raw) {
    SuperView v{};
    v.base.read_at = view_read;
    v.raw = &raw;
    sqfs_super_t out{};
    return sqfs_super_read(&out, &v.base);
}

} // namespace

// ---- Inflater -------------------------------------------------------------

Inflater::Inflater(const Image& img)
    : comp_(img.comp_) {
    if (comp_ == SQFS_COMP_GZIP) {
        deflate_ = libdeflate_alloc_decompressor();
        if (deflate_ == nullptr)
            throw std::bad_alloc();
    } else {
        other_ = make_decompressor(comp_, img.block_size_);
        if (other_ == nullptr)
            throw std::bad_alloc(); // open() made one already: only memory can fail now
    }
}

Inflater::~Inflater() {
    if (deflate_ != nullptr)
        libdeflate_free_decompressor(deflate_);
    if (other_ != nullptr)
        sqfs_destroy(other_);
}

std::size_t Inflater::inflate(const void* in, std::size_t n, void* out, std::size_t cap) {
    if (deflate_ != nullptr) {
        // SquashFS's gzip blocks are zlib streams (RFC 1950). libdeflate
        // stops at cap bytes: a block that would inflate to more is refused
        // (INSUFFICIENT_SPACE), never written past the buffer.
        std::size_t got = 0;
        const libdeflate_result r = libdeflate_zlib_decompress(deflate_, in, n, out, cap, &got);
        if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
            corrupt(cat("a block inflates to more than ", cap, " bytes"));
        if (r != LIBDEFLATE_SUCCESS)
            corrupt("a compressed block is not a valid zlib stream");
        return got;
    }
    const sqfs_s32 r =
        other_->do_block(other_, static_cast<const sqfs_u8*>(in), static_cast<sqfs_u32>(n),
                         static_cast<sqfs_u8*>(out), static_cast<sqfs_u32>(cap));
    if (r < 0 || static_cast<std::size_t>(r) > cap)
        corrupt(cat("a compressed block can't be inflated (", compressor_words(comp_),
                    "), or inflates to more than ", cap, " bytes"));
    return static_cast<std::size_t>(r);
}

// ---- metadata -------------------------------------------------------------

// Reads the metadata of one table ([lo, limit) of the file) as one stream
// across its blocks, through the image's shared block cache.
class MetaCursor {
public:
    MetaCursor(const Image& img, std::uint64_t limit, Inflater& inf)
        : img_(img)
        , limit_(limit)
        , inf_(inf) {}

    void seek(std::uint64_t pos, std::size_t offset) {
        block_ = img_.meta_block(pos, limit_, inf_);
        if (offset >= block_->size)
            corrupt(cat("a metadata reference points past its block (offset ", offset, ")"));
        off_ = offset;
    }

    void read(void* dst, std::size_t n) {
        auto* p = static_cast<char*>(dst);
        while (n > 0) {
            if (off_ == block_->size) {
                block_ = img_.meta_block(block_->next, limit_, inf_);
                off_ = 0;
            }
            const std::size_t k = std::min(n, block_->size - off_);
            std::memcpy(p, block_->data.get() + off_, k);
            p += k;
            off_ += k;
            n -= k;
        }
    }

    template <typename T>
    T get() {
        T v;
        read(&v, sizeof v);
        return v;
    }

private:
    const Image& img_;
    std::uint64_t limit_;
    Inflater& inf_;
    std::shared_ptr<const Block> block_;
    std::size_t off_ = 0;
};

// A metadata block: a 16-bit header (size, and a flag for "stored
// uncompressed"), then at most 8 KiB of data that inflates to at most 8 KiB,
// all before limit (the end of its table).
std::shared_ptr<const Block> Image::meta_block(std::uint64_t pos, std::uint64_t limit,
                                               Inflater& inf) const {
    if (pos < super_size || pos >= limit || limit - pos < 2)
        corrupt(cat("a metadata block lies outside its table (at ", pos, ")"));
    return meta_->get({pos, 0}, meta_block_size, [&](const BlockKey& key, Block& out) {
        std::uint16_t hdr = 0;
        pread_exact(&hdr, 2, key.pos);
        const std::size_t size = hdr & 0x7FFF;
        if (size == 0 || size > meta_block_size)
            corrupt(cat("a metadata block claims ", size, " bytes (at ", key.pos, ")"));
        if (size > limit - key.pos - 2)
            corrupt(cat("a metadata block runs past the end of its table (at ", key.pos, ")"));
        out.next = key.pos + 2 + size;
        if ((hdr & uncompressed_meta) != 0) {
            pread_exact(out.data.get(), size, key.pos + 2);
            out.size = size;
            return;
        }
        char in[meta_block_size];
        pread_exact(in, size, key.pos + 2);
        out.size = inf.inflate(in, size, out.data.get(), out.cap);
    });
}

void Image::pread_exact(void* buf, std::size_t n, std::uint64_t at) const {
    if (at > bytes_used_ || n > bytes_used_ - at)
        corrupt(cat("a reference points past the end of the image (", at, ")"));
    auto* p = static_cast<char*>(buf);
    while (n > 0) {
        const ssize_t r = ::pread(fd_.get(), p, n, static_cast<off_t>(at));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            throw SquashError(cat("can't read at byte ", at, ": ", std::strerror(errno)));
        if (r == 0)
            corrupt(cat("truncated: it ends before byte ", at + n));
        p += r;
        at += static_cast<std::uint64_t>(r);
        n -= static_cast<std::size_t>(r);
    }
}

// ---- opening --------------------------------------------------------------

std::shared_ptr<Image> Image::open(const fs::path& path, std::size_t meta_cache_bytes) {
    Fd fd = try_open_at(AT_FDCWD, path, O_RDONLY);
    if (!fd)
        throw_errno_code(Exit::squash, "can't open ", path.string());
    return open(std::move(fd), meta_cache_bytes);
}

std::shared_ptr<Image> Image::open(Fd fd, std::size_t meta_cache_bytes) {
    std::shared_ptr<Image> img(new Image());
    img->fd_ = std::move(fd);
    img->meta_ = std::make_unique<BlockCache>(meta_cache_bytes);

    struct stat st {};

    if (::fstat(img->fd_.get(), &st) != 0)
        throw_errno_code(Exit::squash, "can't stat");
    if (!S_ISREG(st.st_mode))
        corrupt("not a regular file");
    img->check_super(static_cast<std::uint64_t>(st.st_size));
    img->load_tables();
    // The root and its entries now, so a damaged image is refused before any
    // work starts (cheap: a block or two).
    Inflater inf(*img);
    try {
        const Inode root = img->inode(img->root_ref_, inf);
        if (!root.is_dir())
            corrupt("it is not a directory");
        img->list(root, 0, inf, [&](const DirEntry& e) {
            static_cast<void>(img->inode(e.ref, inf));
            return true;
        });
    } catch (SquashError& e) {
        e.add_context("corrupted: can't read the root directory");
        throw;
    }
    return img;
}

Image::~Image() = default;

void Image::check_super(std::uint64_t file_size) {
    file_size_ = file_size;
    sqfs_super_t sb{};
    if (file_size < 4)
        corrupt("not a SquashFS file (bad magic)");
    const ssize_t got = ::pread(fd_.get(), &sb, sizeof sb, 0);
    if (got < 0)
        throw SquashError(cat("can't read the superblock: ", std::strerror(errno)));
    if (got < 4 || sb.magic != SQFS_MAGIC)
        corrupt("not a SquashFS file (bad magic)");
    if (static_cast<std::size_t>(got) < sizeof sb)
        corrupt(cat("truncated (", file_size, " bytes, smaller than a SquashFS superblock)"));
    if (sb.version_major != 4 || sb.version_minor != 0)
        corrupt(cat("unsupported SquashFS version ", sb.version_major, ".", sb.version_minor,
                    " (need 4.0)"));
    // The block size bounds every buffer of data: a power of two from 4 KiB
    // to 1 MiB, and block_log must say the same.
    const std::uint32_t bs = sb.block_size;
    if (!std::has_single_bit(bs) || bs < SQFS_MIN_BLOCK_SIZE || bs > SQFS_MAX_BLOCK_SIZE)
        corrupt(cat("corrupted superblock (block size ", bs,
                    ", not a power of two from 4 KiB to 1 MiB)"));
    if (sb.block_log != std::countr_zero(bs))
        corrupt(cat("corrupted superblock (block size ", bs, " but block_log ", sb.block_log, ")"));
    const char* comp = compressor_words(sb.compression_id);
    if (comp == nullptr)
        corrupt(cat("compressed with unknown method ", sb.compression_id,
                    ", which this build can't read"));
    if (sb.bytes_used > file_size)
        corrupt(cat("truncated (", file_size, " bytes; the superblock says ", sb.bytes_used, ")"));
    if (sb.bytes_used < super_size)
        corrupt(cat("corrupted superblock (", sb.bytes_used, " bytes used)"));
    if (sb.id_count == 0)
        corrupt("corrupted superblock (no owner ids)");
    // The tables, in the order every writer puts them: inodes, directories,
    // fragments, export, ids, xattrs. Each must start inside the image, and
    // the inode and directory tables must be in that order; the others are
    // checked when loaded.
    const std::uint64_t end = sb.bytes_used;
    if (sb.inode_table_start < super_size || sb.inode_table_start >= sb.directory_table_start ||
        sb.directory_table_start >= end)
        corrupt("corrupted superblock (impossible inode or directory table offsets)");
    if (sb.id_table_start < sb.directory_table_start || sb.id_table_start >= end)
        corrupt("corrupted superblock (impossible id table offset)");
    for (const std::uint64_t t :
         {sb.fragment_table_start, sb.export_table_start, sb.xattr_id_table_start})
        if (t != no_table && (t < sb.directory_table_start || t >= end))
            corrupt("corrupted superblock (a table starts outside the image)");
    // libsquashfs's own parser must agree (it checks the same and more).
    const int lib = libsquashfs_super_check(sb);
    if (lib != 0)
        corrupt(cat("corrupted superblock (libsquashfs says error ", lib, ")"));

    bytes_used_ = end;
    block_size_ = bs;
    inodes_ = sb.inode_count;
    comp_ = sb.compression_id;
    root_ref_ = sb.root_inode_ref;
    inode_start_ = sb.inode_table_start;
    inode_end_ = sb.directory_table_start;
    dir_start_ = sb.directory_table_start;
    dir_end_ = end;
    for (const std::uint64_t t : {sb.fragment_table_start, sb.export_table_start, sb.id_table_start,
                                  sb.xattr_id_table_start})
        if (t != no_table && t > dir_start_ && t < dir_end_)
            dir_end_ = t;
    data_end_ = inode_start_;

    // A decompressor is made now so that an image this build can't read is
    // refused up front.
    if (comp_ != SQFS_COMP_GZIP) {
        sqfs_compressor_t* c = make_decompressor(comp_, bs);
        if (c == nullptr)
            corrupt(cat("compressed with ", comp, ", which this build can't read"));
        sqfs_destroy(c);
    }
}

namespace {

// Where the metadata blocks of a table are: a list of 64-bit positions at
// `at`, one per 8 KiB of table, each inside [lo, hi).
std::vector<std::uint64_t> block_list(int fd, std::uint64_t bytes_used, std::uint64_t at,
                                      std::uint64_t table_bytes, std::uint64_t lo, std::uint64_t hi,
                                      const char* what) {
    const std::uint64_t n = (table_bytes + meta_block_size - 1) / meta_block_size;
    if (at > bytes_used || n * 8 > bytes_used - at)
        corrupt(cat("corrupted ", what, " table (it claims more blocks than the image holds)"));
    std::vector<std::uint64_t> list(n);
    std::size_t done = 0;
    auto* p = reinterpret_cast<char*>(list.data());
    while (done < n * 8) {
        const ssize_t r = ::pread(fd, p + done, n * 8 - done, static_cast<off_t>(at + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            corrupt(cat("can't read the ", what, " table"));
        done += static_cast<std::size_t>(r);
    }
    for (const std::uint64_t b : list)
        if (b < lo || b >= hi)
            corrupt(cat("corrupted ", what, " table (a block lies outside it)"));
    return list;
}

} // namespace

void Image::load_tables() {
    sqfs_super_t sb{};
    pread_exact(&sb, sizeof sb, 0);
    Inflater inf(*this);

    // Ids: at most 65535, loaded whole (256 KiB at most).
    {
        const std::uint64_t bytes = std::uint64_t{sb.id_count} * 4;
        const auto where = block_list(fd_.get(), bytes_used_, sb.id_table_start, bytes, dir_start_,
                                      sb.id_table_start, "id");
        ids_.resize(sb.id_count);
        auto* p = reinterpret_cast<char*>(ids_.data());
        for (std::size_t i = 0; i < where.size(); i++) {
            MetaCursor c(*this, sb.id_table_start, inf);
            c.seek(where[i], 0);
            c.read(p + i * meta_block_size,
                   std::min<std::uint64_t>(meta_block_size, bytes - i * meta_block_size));
        }
    }

    // Fragments: only where the table's blocks are; entries are read through
    // the metadata cache when a file needs one.
    if ((sb.flags & SQFS_FLAG_NO_FRAGMENTS) == 0 && sb.fragment_table_start != no_table &&
        sb.fragment_entry_count != 0) {
        if (sb.fragment_entry_count > max_fragments)
            corrupt(cat("corrupted superblock (", sb.fragment_entry_count, " fragments)"));
        fragments_ = sb.fragment_entry_count;
        fragment_blocks_ = block_list(fd_.get(), bytes_used_, sb.fragment_table_start,
                                      std::uint64_t{fragments_} * sizeof(sqfs_fragment_t),
                                      dir_start_, sb.fragment_table_start, "fragment");
        frag_meta_lo_ = dir_start_;
        frag_meta_hi_ = sb.fragment_table_start;
    }

    // Xattrs: a header at xattr_id_table_start (where the key/value table
    // starts, how many ids), then where the id table's blocks are.
    if ((sb.flags & SQFS_FLAG_NO_XATTRS) == 0 && sb.xattr_id_table_start != no_table) {
        sqfs_xattr_id_table_t hdr{};
        pread_exact(&hdr, sizeof hdr, sb.xattr_id_table_start);
        if (hdr.xattr_ids > max_xattr_ids)
            corrupt(cat("corrupted xattr table (", hdr.xattr_ids, " ids)"));
        if (hdr.xattr_table_start < sb.id_table_start ||
            hdr.xattr_table_start >= sb.xattr_id_table_start)
            corrupt("corrupted xattr table (impossible offset)");
        xattr_ids_ = hdr.xattr_ids;
        xattr_kv_start_ = hdr.xattr_table_start;
        xattr_kv_end_ = sb.xattr_id_table_start;
        xattr_id_blocks_ = block_list(fd_.get(), bytes_used_, sb.xattr_id_table_start + sizeof hdr,
                                      std::uint64_t{xattr_ids_} * sizeof(sqfs_xattr_id_t),
                                      xattr_kv_start_, sb.xattr_id_table_start, "xattr id");
    }
}

// ---- inodes ---------------------------------------------------------------

bool Inode::is_dir() const {
    return S_ISDIR(mode);
}

bool Inode::is_file() const {
    return S_ISREG(mode);
}

bool Inode::is_symlink() const {
    return S_ISLNK(mode);
}

namespace {

mode_t type_bits(int type) {
    switch (type) {
    case SQFS_INODE_DIR:
    case SQFS_INODE_EXT_DIR:
        return S_IFDIR;
    case SQFS_INODE_FILE:
    case SQFS_INODE_EXT_FILE:
        return S_IFREG;
    case SQFS_INODE_SLINK:
    case SQFS_INODE_EXT_SLINK:
        return S_IFLNK;
    case SQFS_INODE_BDEV:
    case SQFS_INODE_EXT_BDEV:
        return S_IFBLK;
    case SQFS_INODE_CDEV:
    case SQFS_INODE_EXT_CDEV:
        return S_IFCHR;
    case SQFS_INODE_FIFO:
    case SQFS_INODE_EXT_FIFO:
        return S_IFIFO;
    case SQFS_INODE_SOCKET:
    case SQFS_INODE_EXT_SOCKET:
        return S_IFSOCK;
    }
    return 0;
}

// A data block's size header: at most one block, compressed or not (a
// writer stores a block raw when compressing does not make it smaller).
bool valid_data_header(std::uint32_t hdr, std::uint32_t block_size) {
    if ((hdr & ~(uncompressed_data | 0xFFFFFF)) != 0)
        return false;
    return (hdr & 0xFFFFFF) <= block_size;
}

} // namespace

Inode Image::inode(std::uint64_t ref, Inflater& inf) const {
    // A reference: the metadata block's offset in the inode table (bits
    // 16-47) and the inode's offset in the inflated block (bits 0-15).
    const std::uint64_t block = ref >> 16;
    const std::size_t offset = ref & 0xFFFF;
    if ((ref >> 48) != 0 || block >= inode_end_ - inode_start_ || offset >= meta_block_size)
        corrupt(cat("corrupted inode reference ", ref));
    MetaCursor c(*this, inode_end_, inf);
    c.seek(inode_start_ + block, offset);
    const auto base = c.get<sqfs_inode_t>();
    Inode in;
    in.ref = ref;
    in.type = base.type;
    const mode_t bits = type_bits(base.type);
    if (bits == 0)
        corrupt(cat("corrupted inode ", ref, " (unknown type ", base.type, ")"));
    if (base.uid_idx >= ids_.size() || base.gid_idx >= ids_.size())
        corrupt(cat("corrupted inode ", ref, " (owner id index out of range)"));
    in.mode = bits | (base.mode & 07777);
    in.uid = ids_[base.uid_idx];
    in.gid = ids_[base.gid_idx];
    in.mtime = base.mod_time;
    in.number = base.inode_number;
    const std::uint64_t dir_len = dir_end_ - dir_start_;
    switch (base.type) {
    case SQFS_INODE_DIR: {
        const auto d = c.get<sqfs_inode_dir_t>();
        in.nlink = d.nlink;
        in.dir_block = d.start_block;
        in.dir_offset = d.offset;
        in.dir_size = d.size;
        in.parent = d.parent_inode;
        break;
    }
    case SQFS_INODE_EXT_DIR: {
        // The index that follows (for lookups in big directories) is not
        // read: lookups scan the listing.
        const auto d = c.get<sqfs_inode_dir_ext_t>();
        in.nlink = d.nlink;
        in.dir_block = d.start_block;
        in.dir_offset = d.offset;
        in.dir_size = d.size;
        in.parent = d.parent_inode;
        in.xattr = d.xattr_idx;
        break;
    }
    case SQFS_INODE_FILE: {
        const auto f = c.get<sqfs_inode_file_t>();
        in.blocks_start = f.blocks_start;
        in.size = f.file_size;
        in.frag = f.fragment_index;
        in.frag_offset = f.fragment_offset;
        break;
    }
    case SQFS_INODE_EXT_FILE: {
        const auto f = c.get<sqfs_inode_file_ext_t>();
        in.blocks_start = f.blocks_start;
        in.size = f.file_size;
        in.frag = f.fragment_idx;
        in.frag_offset = f.fragment_offset;
        in.nlink = f.nlink;
        in.xattr = f.xattr_idx;
        break;
    }
    case SQFS_INODE_SLINK:
    case SQFS_INODE_EXT_SLINK: {
        const auto s = c.get<sqfs_inode_slink_t>();
        in.nlink = s.nlink;
        if (s.target_size == 0 || s.target_size > max_symlink)
            corrupt(cat("corrupted symlink inode ", ref, " (target of ", s.target_size, " bytes)"));
        in.target.resize(s.target_size);
        c.read(in.target.data(), s.target_size);
        if (in.target.find('\0') != std::string::npos)
            corrupt(cat("corrupted symlink inode ", ref, " (NUL in the target)"));
        if (base.type == SQFS_INODE_EXT_SLINK)
            in.xattr = c.get<std::uint32_t>();
        break;
    }
    case SQFS_INODE_BDEV:
    case SQFS_INODE_CDEV: {
        const auto d = c.get<sqfs_inode_dev_t>();
        in.nlink = d.nlink;
        in.devno = d.devno;
        break;
    }
    case SQFS_INODE_EXT_BDEV:
    case SQFS_INODE_EXT_CDEV: {
        const auto d = c.get<sqfs_inode_dev_ext_t>();
        in.nlink = d.nlink;
        in.devno = d.devno;
        in.xattr = d.xattr_idx;
        break;
    }
    case SQFS_INODE_FIFO:
    case SQFS_INODE_SOCKET:
        in.nlink = c.get<sqfs_inode_ipc_t>().nlink;
        break;
    default: { // the extended FIFO and socket
        const auto d = c.get<sqfs_inode_ipc_ext_t>();
        in.nlink = d.nlink;
        in.xattr = d.xattr_idx;
        break;
    }
    }
    if (in.xattr != no_index && in.xattr >= xattr_ids_)
        corrupt(cat("corrupted inode ", ref, " (xattr index ", in.xattr, " out of range)"));
    if (in.is_dir() && (in.dir_block >= dir_len || in.dir_offset >= meta_block_size))
        corrupt(cat("corrupted directory inode ", ref, " (listing outside the directory table)"));
    if (in.is_file()) {
        const std::uint64_t bs = block_size_;
        if (in.frag != no_index) {
            if (in.frag >= fragments_)
                corrupt(cat("corrupted file inode ", ref, " (fragment index ", in.frag,
                            " out of range)"));
            if (in.size % bs == 0 || in.frag_offset >= bs || in.size % bs > bs - in.frag_offset)
                corrupt(cat("corrupted file inode ", ref, " (fragment offset out of range)"));
        }
        const std::uint64_t count = in.frag != no_index ? in.size / bs : (in.size + bs - 1) / bs;
        if (count > max_file_blocks)
            corrupt(cat("corrupted file inode ", ref, " (", in.size, " bytes: too many blocks)"));
        in.blocks.resize(count);
        c.read(in.blocks.data(), count * 4);
        for (const std::uint32_t h : in.blocks)
            if (!valid_data_header(h, block_size_))
                corrupt(cat("corrupted file inode ", ref, " (a block of ", h & 0xFFFFFF,
                            " bytes, more than the block size)"));
    }
    return in;
}

// ---- directories ----------------------------------------------------------

// A listing is a series of runs: a header (entry count less one, the inode
// table block of the run's inodes, a base inode number), then its entries
// (inode offset in that block, inode number difference, type, name length
// less one, name). Its length in the inode counts 3 more bytes than it
// holds, for "." and "..", as the kernel counts it.
void Image::list_impl(const Inode& dir, std::uint32_t from, Inflater& inf,
                      const std::function<bool(const DirEntry&)>& fn) const {
    if (!dir.is_dir())
        corrupt(cat("inode ", dir.ref, " is not a directory"));
    const std::uint32_t total = dir.dir_size > 3 ? dir.dir_size - 3 : 0;
    if (total == 0)
        return;
    MetaCursor c(*this, dir_end_, inf);
    c.seek(dir_start_ + dir.dir_block, dir.dir_offset);
    std::uint32_t at = 0;
    const auto need = [&](std::uint32_t n) {
        if (n > total - at)
            corrupt(cat("corrupted directory ", dir.ref, " (listing longer than its size)"));
        at += n;
    };
    DirEntry e;
    while (at < total) {
        need(sizeof(sqfs_dir_header_t));
        const auto h = c.get<sqfs_dir_header_t>();
        if (h.count >= max_dir_run)
            corrupt(cat("corrupted directory ", dir.ref, " (", h.count + 1, " entries in a run)"));
        if (h.start_block >= inode_end_ - inode_start_)
            corrupt(cat("corrupted directory ", dir.ref, " (inode block outside the table)"));
        for (std::uint32_t i = 0; i <= h.count; i++) {
            need(sizeof(sqfs_dir_entry_t));
            const auto raw = c.get<sqfs_dir_entry_t>();
            const std::size_t len = std::size_t{raw.size} + 1;
            if (len > max_name)
                corrupt(cat("corrupted directory ", dir.ref, " (a name of ", len, " bytes)"));
            need(static_cast<std::uint32_t>(len));
            e.name.resize(len);
            c.read(e.name.data(), len);
            if (e.name == "." || e.name == ".." || e.name.find('/') != std::string::npos ||
                e.name.find('\0') != std::string::npos)
                corrupt(cat("corrupted directory ", dir.ref, " (invalid name '", printable(e.name),
                            "')"));
            if (raw.offset >= meta_block_size)
                corrupt(cat("corrupted directory ", dir.ref, " (inode offset out of range)"));
            e.type = type_bits(raw.type);
            if (e.type == 0 || raw.type > SQFS_INODE_SOCKET)
                corrupt(cat("corrupted directory ", dir.ref, " (entry type ", raw.type, ")"));
            e.ref = (std::uint64_t{h.start_block} << 16) | raw.offset;
            e.number = h.inode_number + static_cast<std::uint32_t>(raw.inode_diff);
            e.next = at;
            if (at > from && !fn(e))
                return;
        }
    }
}

bool Image::lookup(const Inode& dir, std::string_view name, Inflater& inf, DirEntry& out) const {
    bool found = false;
    list(dir, 0, inf, [&](const DirEntry& e) {
        if (e.name != name)
            return true;
        out = e;
        found = true;
        return false;
    });
    return found;
}

bool Image::resolve(std::string_view path, Inflater& inf, Inode& out) const {
    constexpr int max_symlinks_followed = 40; // the kernel's MAXSYMLINKS
    const Inode root = inode(root_ref(), inf);
    // The directories from the root down to the current one: ".." pops, so
    // nothing climbs above the image's root.
    std::vector<Inode> stack;
    std::deque<std::string> todo;
    auto push_components = [&](std::string_view p) {
        auto parts = split(p, '/');
        for (auto it = parts.rbegin(); it != parts.rend(); ++it)
            if (!it->empty() && *it != ".")
                todo.push_front(std::move(*it));
    };
    push_components(path);
    int links = 0;
    while (!todo.empty()) {
        const std::string c = std::move(todo.front());
        todo.pop_front();
        if (c == "..") {
            if (!stack.empty())
                stack.pop_back();
            continue;
        }
        const Inode& dir = stack.empty() ? root : stack.back();
        DirEntry entry;
        if (!dir.is_dir() || c.size() > max_name || !lookup(dir, c, inf, entry))
            return false;
        Inode child = inode(entry.ref, inf);
        if (child.is_symlink()) {
            if (++links > max_symlinks_followed)
                return false;
            if (child.target[0] == '/')
                stack.clear();
            push_components(child.target);
            continue;
        }
        stack.push_back(std::move(child));
    }
    out = stack.empty() ? root : std::move(stack.back());
    return true;
}

// ---- xattrs ---------------------------------------------------------------

std::vector<Xattr> Image::xattrs(const Inode& in, Inflater& inf) const {
    std::vector<Xattr> out;
    if (in.xattr == no_index)
        return out;
    // The id: where its keys and values are, and how many.
    const std::uint64_t byte = std::uint64_t{in.xattr} * sizeof(sqfs_xattr_id_t);
    MetaCursor ids(*this, xattr_kv_end_, inf);
    ids.seek(xattr_id_blocks_.at(byte / meta_block_size), byte % meta_block_size);
    const auto id = ids.get<sqfs_xattr_id_t>();
    const auto kv_at = [&](std::uint64_t ref, MetaCursor& c) {
        if ((ref >> 16) >= xattr_kv_end_ - xattr_kv_start_ || (ref & 0xFFFF) >= meta_block_size)
            corrupt(cat("corrupted xattrs of inode ", in.ref, " (reference out of range)"));
        c.seek(xattr_kv_start_ + (ref >> 16), ref & 0xFFFF);
    };
    MetaCursor c(*this, xattr_kv_end_, inf);
    kv_at(id.xattr, c);
    std::size_t budget = max_xattr_bytes;
    const auto spend = [&](std::size_t n) {
        if (n > budget)
            corrupt(cat("xattrs of inode ", in.ref, " larger than ", max_xattr_bytes, " bytes"));
        budget -= n;
    };
    for (std::uint32_t i = 0; i < id.count; i++) {
        const auto key = c.get<sqfs_xattr_entry_t>();
        const char* prefix = nullptr;
        switch (key.type & SQFS_XATTR_PREFIX_MASK) {
        case SQFS_XATTR_USER:
            prefix = "user.";
            break;
        case SQFS_XATTR_TRUSTED:
            prefix = "trusted.";
            break;
        case SQFS_XATTR_SECURITY:
            prefix = "security.";
            break;
        default:
            corrupt(cat("corrupted xattrs of inode ", in.ref, " (prefix ", key.type, ")"));
        }
        spend(std::size_t{key.size} + 1);
        Xattr x;
        x.name = prefix;
        const std::size_t plen = x.name.size();
        x.name.resize(plen + key.size);
        c.read(x.name.data() + plen, key.size);
        auto vsize = c.get<std::uint32_t>();
        if ((key.type & SQFS_XATTR_FLAG_OOL) != 0) {
            // Stored once elsewhere: the value here is a reference to it.
            if (vsize != 8)
                corrupt(cat("corrupted xattrs of inode ", in.ref, " (bad out-of-line value)"));
            const auto ref = c.get<std::uint64_t>();
            MetaCursor far(*this, xattr_kv_end_, inf);
            kv_at(ref, far);
            vsize = far.get<std::uint32_t>();
            spend(vsize);
            x.value.resize(vsize);
            far.read(x.value.data(), vsize);
        } else {
            spend(vsize);
            x.value.resize(vsize);
            c.read(x.value.data(), vsize);
        }
        out.push_back(std::move(x));
    }
    return out;
}

// ---- data -----------------------------------------------------------------

Fragment Image::fragment(std::uint32_t index, Inflater& inf) const {
    if (index >= fragments_)
        corrupt(cat("fragment index ", index, " out of range"));
    const std::uint64_t byte = std::uint64_t{index} * sizeof(sqfs_fragment_t);
    MetaCursor c(*this, frag_meta_hi_, inf);
    c.seek(fragment_blocks_[byte / meta_block_size], byte % meta_block_size);
    const auto f = c.get<sqfs_fragment_t>();
    const std::uint32_t size = f.size & 0xFFFFFF;
    if (!valid_data_header(f.size, block_size_) || size == 0 || f.start_offset < super_size ||
        f.start_offset > data_end_ || size > data_end_ - f.start_offset)
        corrupt(cat("corrupted fragment ", index, " (outside the data, or larger than a block)"));
    return Fragment{{f.start_offset, f.size}};
}

BlockKey FileLayout::block(std::size_t i) const {
    if ((hdrs[i] & 0xFFFFFF) == 0)
        return {0, 0};
    std::uint64_t pos = starts[i / 64];
    for (std::size_t j = i - i % 64; j < i; j++)
        pos += hdrs[j] & 0xFFFFFF;
    return {pos, hdrs[i]};
}

std::uint64_t file_spans(const FileLayout& l, std::uint64_t size, std::uint64_t block_size,
                         std::uint64_t off, std::size_t len, std::vector<FileSpan>& out) {
    std::size_t done = 0;
    std::uint64_t i = off / block_size;
    while (done < len) {
        const std::uint64_t start = i * block_size; // where block i starts in the file
        FileSpan sp;
        std::size_t base = 0;
        if (i < l.count()) {
            sp.key = l.block(i);
            sp.hole = sp.key.hdr == 0;
        } else if (l.has_tail && i == l.count()) {
            sp.key = l.tail;
            base = l.tail_offset;
        } else {
            corrupt("a read past the file's blocks");
        }
        const auto avail = static_cast<std::size_t>(std::min(block_size, size - start));
        const auto within = static_cast<std::size_t>(off + done - start);
        sp.len = std::min(avail - within, len - done);
        sp.at = base + within;
        out.push_back(sp);
        done += sp.len;
        i++;
    }
    return i;
}

FileLayout Image::layout(const Inode& file, Inflater& inf) const {
    FileLayout l;
    l.hdrs = file.blocks;
    l.starts.reserve(file.blocks.size() / 64 + 1);
    std::uint64_t pos = file.blocks_start;
    for (std::size_t i = 0; i < file.blocks.size(); i++) {
        if (i % 64 == 0)
            l.starts.push_back(pos);
        const std::uint32_t size = file.blocks[i] & 0xFFFFFF;
        if (size == 0) // a hole: zeros, not stored
            continue;
        if (pos < super_size || pos > data_end_ || size > data_end_ - pos)
            corrupt(cat("corrupted file inode ", file.ref, " (its blocks lie outside the data)"));
        pos += size;
    }
    if (file.frag != no_index) {
        l.has_tail = true;
        l.tail = fragment(file.frag, inf).key;
        l.tail_offset = file.frag_offset;
    }
    return l;
}

std::size_t Image::read_block(const BlockKey& key, char* out, std::size_t cap,
                              Inflater& inf) const {
    const std::uint32_t size = key.hdr & 0xFFFFFF;
    if (!valid_data_header(key.hdr, block_size_) || size == 0 || cap < block_size_ ||
        key.pos < super_size || key.pos > data_end_ || size > data_end_ - key.pos)
        corrupt(cat("corrupted data block at ", key.pos));
    if ((key.hdr & uncompressed_data) != 0) {
        pread_exact(out, size, key.pos);
        return size;
    }
    // thread_local: one buffer per thread, kept between blocks (at most
    // 1 MiB per thread, the largest block size).
    thread_local std::vector<char> in;
    if (in.size() < size)
        in.resize(size);
    pread_exact(in.data(), size, key.pos);
    return inf.inflate(in.data(), size, out, block_size_);
}

} // namespace ch::image::squash

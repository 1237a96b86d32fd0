// source_squash.cc: a SquashFS file as a source of the entry stream, read
// in-process with libsquashfs. The walk is depth-first with an explicit
// stack (a hostile image can nest deeper than the C stack): each directory's
// listing is read whole and sorted, so entries come parents first, siblings
// by name. Only the listings on the current path and the hard-link map are
// kept in memory; file data is decompressed block by block as read() asks.
//
// The image is untrusted input: every table reference, name and block list
// is checked before use, a directory that contains itself is refused, and
// every failure names the file and says what is wrong (exit 84).
#include <sqfs/block.h>
#include <sqfs/compressor.h>
#include <sqfs/data_reader.h>
#include <sqfs/dir.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/meta_reader.h>
#include <sqfs/super.h>
#include <sqfs/xattr.h>
#include <sqfs/xattr_reader.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "image/squash.hh"
#include "image/squash_io.hh"
#include "util/error.hh"

namespace ch::image {

namespace {

using namespace squash;

constexpr sqfs_u64 no_table = std::numeric_limits<sqfs_u64>::max();
constexpr sqfs_u32 no_xattr = 0xFFFFFFFF;
constexpr sqfs_u32 no_fragment = 0xFFFFFFFF;
// Bytes handed to sqfs_data_reader_read at once (its size is 32 bits).
constexpr std::size_t max_read = 1u << 20;

class SquashSource : public Source {
public:
    explicit SquashSource(const fs::path& file);
    bool next(Entry& e) override;
    std::size_t read(void* buf, std::size_t n) override;
    void rewind() override;
    std::string describe() const override { return name_; }

private:
    struct Child {
        std::string name;
        sqfs_u64 ref;
    };
    struct Frame {
        std::string path;
        sqfs_u64 ref;
        std::vector<Child> kids;
        std::size_t next = 0;
    };

    [[noreturn]] void fail(std::string_view why) const;
    [[noreturn]] void fail_at(std::string_view path, std::string_view why) const;
    void check(int code, std::string_view context) const;
    void check_at(int code, std::string_view path, std::string_view context) const;

    Mem<sqfs_inode_generic_t> read_inode(sqfs_u64 ref, std::string_view path) const;
    void fill(Entry& e, std::string path, Mem<sqfs_inode_generic_t> ino, sqfs_u64 ref);
    std::vector<Child> read_listing(const sqfs_inode_generic_t& dir, std::string_view path) const;
    void read_xattrs(Entry& e, const sqfs_inode_generic_t& ino) const;
    void map_file(Entry& e, const sqfs_inode_generic_t& ino);

    std::string name_;
    Ptr<sqfs_file_t> file_;
    sqfs_super_t super_{};
    Ptr<sqfs_compressor_t> cmp_;
    Ptr<sqfs_id_table_t> ids_;
    Ptr<sqfs_meta_reader_t> inode_mr_;
    Ptr<sqfs_meta_reader_t> dir_mr_;
    Ptr<sqfs_data_reader_t> data_;
    Ptr<sqfs_xattr_reader_t> xattrs_; // null if the image has none

    // Walk state.
    bool started_ = false;
    std::vector<Frame> stack_;
    std::unordered_set<sqfs_u64> open_dirs_;            // refs of the dirs on stack_
    std::unordered_map<sqfs_u64, std::string> links_;   // inode ref -> first path (nlink > 1)

    // The regular file whose data read() delivers.
    Mem<sqfs_inode_generic_t> cur_;
    std::string cur_path_;
    std::vector<Extent> extents_;
    std::size_t ext_ = 0;
    std::uint64_t ext_pos_ = 0;
};

SquashSource::SquashSource(const fs::path& file)
    : name_(file.string()) {
    file_ = open_file(file, Access::read);
    // The magic first, by hand: sqfs_super_read on a short file reports an
    // out-of-bounds read, and "not a SquashFS file" is the useful answer.
    const sqfs_u64 size = file_->get_size(file_.get());
    char magic[4] = {};
    if (size < sizeof magic || file_->read_at(file_.get(), 0, magic, sizeof magic) != 0 ||
        std::memcmp(magic, "hsqs", 4) != 0)
        fail("not a SquashFS file (bad magic)");
    if (size < sizeof(sqfs_super_t))
        fail(cat("truncated: ", size, " bytes, shorter than a SquashFS superblock"));
    const int r = sqfs_super_read(&super_, file_.get());
    if (r == SQFS_ERROR_CORRUPTED || r == SQFS_ERROR_OUT_OF_BOUNDS)
        fail("corrupted superblock");
    check(r, "superblock");
    // A copy cut short (full disk, interrupted transfer) is the common
    // damage; say so up front instead of failing later on some table.
    if (super_.bytes_used > size)
        fail(cat("truncated: ", size, " bytes, but its superblock says ", super_.bytes_used));
    // Tables must lie in the file, in the order the format puts them.
    for (const sqfs_u64 start : {super_.inode_table_start, super_.directory_table_start, super_.id_table_start})
        if (start >= super_.bytes_used)
            fail("corrupted superblock (a table starts past the end of the image)");
    if (super_.inode_table_start >= super_.directory_table_start)
        fail("corrupted superblock (inode table after directory table)");

    sqfs_compressor_config_t cfg{};
    int rc = sqfs_compressor_config_init(&cfg, static_cast<SQFS_COMPRESSOR>(super_.compression_id),
                                         super_.block_size, SQFS_COMP_FLAG_UNCOMPRESS);
    sqfs_compressor_t* c = nullptr;
    if (rc == 0)
        rc = sqfs_compressor_create(&cfg, &c);
    if (rc == SQFS_ERROR_UNSUPPORTED)
        fail(cat("compressed with ", compressor_name(super_.compression_id),
                 ", which this libsquashfs can't decompress"));
    check(rc, "compressor");
    cmp_.reset(c);
    if (super_.flags & SQFS_FLAG_COMPRESSOR_OPTIONS)
        check(cmp_->read_options(cmp_.get(), file_.get()), "compressor options");

    ids_.reset(sqfs_id_table_create(0));
    if (!ids_)
        check(SQFS_ERROR_ALLOC, "id table");
    check(sqfs_id_table_read(ids_.get(), file_.get(), &super_, cmp_.get()), "id table");

    // The directory table ends where the next table starts.
    sqfs_u64 dir_end = super_.bytes_used;
    for (const sqfs_u64 t : {super_.fragment_table_start, super_.export_table_start, super_.id_table_start,
                             super_.xattr_id_table_start})
        if (t != no_table && t > super_.directory_table_start && t < dir_end)
            dir_end = t;
    inode_mr_.reset(sqfs_meta_reader_create(file_.get(), cmp_.get(), super_.inode_table_start,
                                            super_.directory_table_start));
    dir_mr_.reset(sqfs_meta_reader_create(file_.get(), cmp_.get(), super_.directory_table_start, dir_end));
    data_.reset(sqfs_data_reader_create(file_.get(), super_.block_size, cmp_.get(), 0));
    if (!inode_mr_ || !dir_mr_ || !data_)
        check(SQFS_ERROR_ALLOC, "readers");
    check(sqfs_data_reader_load_fragment_table(data_.get(), &super_), "fragment table");
    if (!(super_.flags & SQFS_FLAG_NO_XATTRS) && super_.xattr_id_table_start != no_table) {
        xattrs_.reset(sqfs_xattr_reader_create(0));
        if (!xattrs_)
            check(SQFS_ERROR_ALLOC, "xattr table");
        check(sqfs_xattr_reader_load(xattrs_.get(), &super_, file_.get(), cmp_.get()), "xattr table");
    }
    // The root must be readable and a directory; finding out now gives the
    // error before a conversion has created anything.
    const Mem<sqfs_inode_generic_t> root = read_inode(super_.root_inode_ref, "");
    if (root->base.type != SQFS_INODE_DIR && root->base.type != SQFS_INODE_EXT_DIR)
        fail("corrupted: the root is not a directory");
}

void SquashSource::fail(std::string_view why) const {
    throw Error(cat("can't read ", name_, ": ", why), Exit::squash);
}

void SquashSource::fail_at(std::string_view path, std::string_view why) const {
    if (path.empty())
        fail(cat("root directory: ", why));
    fail(cat("entry '", printable(path), "': ", why));
}

void SquashSource::check(int code, std::string_view context) const {
    if (code < 0)
        fail(cat(context, ": ", error_words(code, file_.get())));
}

void SquashSource::check_at(int code, std::string_view path, std::string_view context) const {
    if (code < 0)
        fail_at(path, cat(context, ": ", error_words(code, file_.get())));
}

Mem<sqfs_inode_generic_t> SquashSource::read_inode(sqfs_u64 ref, std::string_view path) const {
    // A reference is the offset of a metadata block within the inode table
    // (bits 16-47) and the inode's offset within the uncompressed block.
    const sqfs_u64 block = ref >> 16;
    const std::size_t offset = ref & 0xFFFF;
    if (block >= super_.directory_table_start - super_.inode_table_start || offset >= SQFS_META_BLOCK_SIZE)
        fail_at(path, "corrupted inode reference");
    sqfs_inode_generic_t* ino = nullptr;
    // libsquashfs adds the inode table's start itself.
    check_at(sqfs_meta_reader_read_inode(inode_mr_.get(), &super_, block, offset, &ino), path, "inode");
    return Mem<sqfs_inode_generic_t>(ino);
}

std::vector<SquashSource::Child> SquashSource::read_listing(const sqfs_inode_generic_t& dir,
                                                            std::string_view path) const {
    sqfs_readdir_state_t st{};
    check_at(sqfs_readdir_state_init(&st, &super_, &dir), path, "directory");
    std::vector<Child> kids;
    while (true) {
        sqfs_dir_entry_t* raw = nullptr;
        sqfs_u32 inum = 0;
        sqfs_u64 iref = 0;
        const int r = sqfs_meta_reader_readdir(dir_mr_.get(), &st, &raw, &inum, &iref);
        if (r > 0)
            break;
        check_at(r, path, "directory listing");
        const Mem<sqfs_dir_entry_t> ent(raw);
        // The name length is stored minus one.
        const std::string_view name(reinterpret_cast<const char*>(ent->name), std::size_t(ent->size) + 1);
        if (name == "." || name == ".." || name.find('/') != std::string_view::npos ||
            name.find('\0') != std::string_view::npos)
            fail_at(path, cat("corrupted directory listing (invalid name '", printable(name), "')"));
        kids.push_back(Child{std::string(name), iref});
    }
    // Writers must store listings sorted (the kernel's lookup depends on it),
    // but the stream's order is our promise, not the image's: sort anyway.
    std::sort(kids.begin(), kids.end(), [](const Child& a, const Child& b) { return a.name < b.name; });
    for (std::size_t i = 1; i < kids.size(); ++i)
        if (kids[i].name == kids[i - 1].name)
            fail_at(path, cat("corrupted directory listing (name '", printable(kids[i].name), "' twice)"));
    return kids;
}

bool SquashSource::next(Entry& e) {
    e = Entry{};
    cur_.reset();
    extents_.clear();
    if (!started_) {
        started_ = true;
        fill(e, "", read_inode(super_.root_inode_ref, ""), super_.root_inode_ref);
        return true;
    }
    while (!stack_.empty()) {
        Frame& f = stack_.back();
        if (f.next == f.kids.size()) {
            open_dirs_.erase(f.ref);
            stack_.pop_back();
            continue;
        }
        Child c = std::move(f.kids[f.next++]);
        std::string path = f.path.empty() ? std::move(c.name) : cat(f.path, "/", c.name);
        Mem<sqfs_inode_generic_t> ino = read_inode(c.ref, path);
        fill(e, std::move(path), std::move(ino), c.ref); // may push onto stack_ (f dangles)
        return true;
    }
    return false;
}

void SquashSource::fill(Entry& e, std::string path, Mem<sqfs_inode_generic_t> ino, sqfs_u64 ref) {
    e.path = std::move(path);
    const sqfs_inode_t& b = ino->base;
    sqfs_u32 uid = 0, gid = 0;
    check_at(sqfs_id_table_index_to_id(ids_.get(), b.uid_idx, &uid), e.path, "owner");
    check_at(sqfs_id_table_index_to_id(ids_.get(), b.gid_idx, &gid), e.path, "group");
    e.mode = b.mode & 07777;
    e.uid = uid;
    e.gid = gid;
    e.mtime = b.mod_time;

    sqfs_u32 nlink = 1; // basic file inodes have no count: one name
    switch (b.type) {
    case SQFS_INODE_DIR:
    case SQFS_INODE_EXT_DIR:
        e.type = EntryType::dir;
        break;
    case SQFS_INODE_FILE:
        e.type = EntryType::file;
        break;
    case SQFS_INODE_EXT_FILE:
        e.type = EntryType::file;
        nlink = ino->data.file_ext.nlink;
        break;
    case SQFS_INODE_SLINK:
    case SQFS_INODE_EXT_SLINK:
        e.type = EntryType::symlink;
        nlink = ino->data.slink.nlink;
        break;
    case SQFS_INODE_BDEV:
    case SQFS_INODE_CDEV:
    case SQFS_INODE_EXT_BDEV:
    case SQFS_INODE_EXT_CDEV: {
        const bool block = b.type == SQFS_INODE_BDEV || b.type == SQFS_INODE_EXT_BDEV;
        e.type = block ? EntryType::blockdev : EntryType::chardev;
        nlink = ino->data.dev.nlink;
        // Linux's encoding (new_encode_dev): minor's low byte, major, the
        // rest of minor.
        const sqfs_u32 d = ino->data.dev.devno;
        e.dev_major = (d >> 8) & 0xFFF;
        e.dev_minor = (d & 0xFF) | ((d >> 12) & 0xFFF00);
        break;
    }
    case SQFS_INODE_FIFO:
    case SQFS_INODE_EXT_FIFO:
        e.type = EntryType::fifo;
        nlink = ino->data.ipc.nlink;
        break;
    case SQFS_INODE_SOCKET:
    case SQFS_INODE_EXT_SOCKET:
        e.type = EntryType::socket;
        nlink = ino->data.ipc.nlink;
        break;
    default:
        fail_at(e.path, cat("corrupted inode (unknown type ", b.type, ")"));
    }

    // A second directory entry for an inode already seen is a hard link.
    // Only inodes that say they have several names are remembered, so the
    // map holds the hard-linked files, not every file of the image.
    if (e.type != EntryType::dir && nlink > 1) {
        const auto [it, first] = links_.emplace(ref, e.path);
        if (!first) {
            e.type = EntryType::hardlink;
            e.link_target = it->second;
            return;
        }
    }
    read_xattrs(e, *ino);

    switch (e.type) {
    case EntryType::dir: {
        if (!open_dirs_.insert(ref).second)
            fail_at(e.path, "corrupted: the directory contains itself");
        std::vector<Child> kids = read_listing(*ino, e.path);
        stack_.push_back(Frame{e.path, ref, std::move(kids), 0});
        break;
    }
    case EntryType::symlink: {
        const sqfs_u32 len = ino->data.slink.target_size;
        if (len > ino->payload_bytes_used)
            fail_at(e.path, "corrupted symlink inode");
        e.link_target.assign(reinterpret_cast<const char*>(ino->extra), len);
        break;
    }
    case EntryType::file:
        map_file(e, *ino);
        cur_ = std::move(ino);
        cur_path_ = e.path;
        break;
    default:
        break;
    }
}

// The file's size, and its data regions if it has sparse blocks. A block
// list that doesn't match the size is refused here rather than when read.
void SquashSource::map_file(Entry& e, const sqfs_inode_generic_t& ino) {
    sqfs_u64 size = 0;
    sqfs_u32 frag = no_fragment, frag_off = 0;
    check_at(sqfs_inode_get_file_size(&ino, &size), e.path, "file inode");
    check_at(sqfs_inode_get_frag_location(&ino, &frag, &frag_off), e.path, "file inode");
    const sqfs_u64 bs = super_.block_size;
    const std::size_t count = sqfs_inode_get_file_block_count(&ino);
    const sqfs_u64 want = frag != no_fragment ? size / bs : (size + bs - 1) / bs;
    if (count != want)
        fail_at(e.path, cat("corrupted file inode (", count, " blocks for ", size, " bytes)"));
    e.size = size;

    bool holes = false;
    auto add = [&](sqfs_u64 off, sqfs_u64 len) {
        if (len == 0)
            return;
        if (!extents_.empty() && extents_.back().offset + extents_.back().length == off)
            extents_.back().length += len;
        else
            extents_.push_back(Extent{off, len});
    };
    for (std::size_t i = 0; i < count; ++i) {
        const sqfs_u64 off = sqfs_u64(i) * bs;
        const sqfs_u64 len = std::min(bs, size - off);
        if (SQFS_IS_SPARSE_BLOCK(ino.extra[i]))
            holes = true;
        else
            add(off, len);
    }
    if (frag != no_fragment)
        add(sqfs_u64(count) * bs, size - sqfs_u64(count) * bs);
    if (holes)
        e.sparse = extents_;
    ext_ = 0;
    ext_pos_ = 0;
}

void SquashSource::read_xattrs(Entry& e, const sqfs_inode_generic_t& ino) const {
    sqfs_u32 idx = no_xattr;
    if (sqfs_inode_get_xattr_index(&ino, &idx) != 0 || idx == no_xattr)
        return;
    if (!xattrs_)
        fail_at(e.path, "corrupted: inode has xattrs but the image has no xattr table");
    sqfs_xattr_id_t desc{};
    check_at(sqfs_xattr_reader_get_desc(xattrs_.get(), idx, &desc), e.path, "xattrs");
    check_at(sqfs_xattr_reader_seek_kv(xattrs_.get(), &desc), e.path, "xattrs");
    for (sqfs_u32 i = 0; i < desc.count; ++i) {
        sqfs_xattr_entry_t* k = nullptr;
        check_at(sqfs_xattr_reader_read_key(xattrs_.get(), &k), e.path, "xattr key");
        const Mem<sqfs_xattr_entry_t> key(k);
        sqfs_xattr_value_t* v = nullptr;
        check_at(sqfs_xattr_reader_read_value(xattrs_.get(), key.get(), &v), e.path, "xattr value");
        const Mem<sqfs_xattr_value_t> value(v);
        // libsquashfs gives the key with its prefix ("user.") put back.
        e.xattrs.push_back(Xattr{std::string(reinterpret_cast<const char*>(key->key)),
                                 std::string(reinterpret_cast<const char*>(value->value), value->size)});
    }
}

std::size_t SquashSource::read(void* buf, std::size_t n) {
    if (!cur_ || n == 0)
        return 0;
    while (ext_ < extents_.size() && ext_pos_ == extents_[ext_].length) {
        ++ext_;
        ext_pos_ = 0;
    }
    if (ext_ == extents_.size())
        return 0;
    // The data reader keeps the last block and fragment block it
    // decompressed, so small reads don't decompress a block twice.
    const Extent& x = extents_[ext_];
    const auto len = static_cast<sqfs_u32>(std::min<sqfs_u64>({n, x.length - ext_pos_, max_read}));
    const sqfs_s32 r = sqfs_data_reader_read(data_.get(), cur_.get(), x.offset + ext_pos_, buf, len);
    check_at(r, cur_path_, "data");
    if (r == 0)
        fail_at(cur_path_, "corrupted: data ends before the file size");
    ext_pos_ += static_cast<sqfs_u64>(r);
    return static_cast<std::size_t>(r);
}

void SquashSource::rewind() {
    started_ = false;
    stack_.clear();
    open_dirs_.clear();
    links_.clear();
    cur_.reset();
    extents_.clear();
}

} // namespace

std::unique_ptr<Source> make_squash_source(const fs::path& file) {
    return std::make_unique<SquashSource>(file);
}

} // namespace ch::image

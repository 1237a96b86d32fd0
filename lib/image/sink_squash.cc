// sink_squash.cc: the SquashFS sink. File data streams through libsquashfs's
// block processor (compressed by worker threads, written in submission order)
// as entries arrive; only metadata stays in memory, as a tree of nodes. At
// commit() the tree is written: inodes in post-order (children before their
// directory), directory listings sorted by name, then the fragment, id and
// xattr tables, then the superblock. The output never depends on timing or
// thread count: same entries in, same bytes out.
//
// What a later entry does to earlier ones (the tar/OCI layering semantics):
// it replaces a non-directory of the same path, a directory over a directory
// only updates the metadata, and a whiteout removes the path and everything
// below it. Data already streamed for a replaced or removed file stays in the
// image as unreferenced blocks: SquashFS data is written once, front to back,
// and the sink never buffers a file to see whether it survives.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <string_view>
#include <vector>

#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqfs/block.h>
#include <sqfs/block_processor.h>
#include <sqfs/block_writer.h>
#include <sqfs/compressor.h>
#include <sqfs/dir_writer.h>
#include <sqfs/frag_table.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/meta_writer.h>
#include <sqfs/super.h>
#include <sqfs/xattr.h>
#include <sqfs/xattr_writer.h>

#include "image/squash.hh"
#include "image/squash_io.hh"
#include "storage/publish.hh"
#include "util/cpus.hh"
#include "util/error.hh"
#include "util/log.hh"

namespace ch::image {

namespace {

using namespace squash;

constexpr std::uint32_t no_xattr = 0xFFFFFFFF;
// Linux's NAME_MAX. SquashFS itself stores up to 256 bytes, but a 256-byte
// name could be neither created nor unpacked on Linux.
constexpr std::size_t name_max = 255;
// Superblock modification time: fixed, so identical input gives identical
// bytes (mksquashfs -mkfs-time 0).
constexpr std::uint32_t image_mtime = 0;
constexpr std::size_t device_block = 4096; // the image is padded to this

struct Node;
using NodePtr = std::shared_ptr<Node>;
using Children = std::map<std::string, NodePtr, std::less<>>; // byte order, as SquashFS wants

// A logical range of data blocks [first, first + count) of a sparse file
// that holds data; the blocks between runs are holes.
struct Run {
    std::uint64_t first = 0;
    std::uint64_t count = 0;
};

// One inode. Hard links are several directory entries sharing one Node;
// directories are never shared.
struct Node {
    EntryType type = EntryType::dir; // dir, file or symlink
    std::uint16_t perm = 0755;
    std::uint32_t uid = 0, gid = 0, mtime = 0;
    std::vector<Xattr> xattrs;          // sorted by name, unique
    std::string target;                 // symlink
    std::unique_ptr<Children> children; // dir
    // Regular files: the processor's inode (an index into the sink's arena),
    // the logical size, and for sparse files the blocks that hold data.
    std::size_t slot = 0;
    std::uint64_t size = 0;
    std::unique_ptr<std::vector<Run>> runs;
    // Filled in by commit().
    std::uint32_t nlink = 0;
    std::uint32_t number = 0;
    std::uint64_t ref = 0;
    bool written = false;

    bool is_dir() const { return type == EntryType::dir; }
};

NodePtr make_dir_node(std::uint16_t perm, std::uint32_t uid, std::uint32_t gid,
                      std::uint32_t mtime) {
    auto n = std::make_shared<Node>();
    n->type = EntryType::dir;
    n->perm = perm;
    n->uid = uid;
    n->gid = gid;
    n->mtime = mtime;
    n->children = std::make_unique<Children>();
    return n;
}

// Dismantle a detached subtree without recursion: a hostile archive can nest
// directories deeper than the stack would survive.
void release(NodePtr n) {
    std::vector<NodePtr> work;
    work.push_back(std::move(n));
    while (!work.empty()) {
        NodePtr cur = std::move(work.back());
        work.pop_back();
        if (cur && cur->children) {
            for (auto& kv : *cur->children)
                work.push_back(std::move(kv.second));
            cur->children->clear();
        }
    }
}

std::uint32_t clamp_time(std::int64_t t) {
    if (t < 0)
        return 0;
    if (t > std::numeric_limits<std::uint32_t>::max())
        return std::numeric_limits<std::uint32_t>::max();
    return static_cast<std::uint32_t>(t);
}

std::uint16_t type_bits(EntryType t) {
    switch (t) {
    case EntryType::dir:
        return S_IFDIR;
    case EntryType::symlink:
        return S_IFLNK;
    default:
        return S_IFREG;
    }
}

const char* kind_words(EntryType t) {
    switch (t) {
    case EntryType::fifo:
        return "a FIFO";
    case EntryType::chardev:
        return "a character device";
    case EntryType::blockdev:
        return "a block device";
    case EntryType::socket:
        return "a socket";
    default:
        return "of an unknown type";
    }
}

// Inodes the block processor allocates and keeps updating until it has
// finished; their addresses must stay put (a deque never moves elements on
// push_back), and they are freed only after the processor is gone.
struct InodeArena {
    std::deque<sqfs_inode_generic_t*> slots;
    InodeArena() = default;
    InodeArena(const InodeArena&) = delete;
    InodeArena& operator=(const InodeArena&) = delete;

    ~InodeArena() {
        for (auto* p : slots)
            sqfs_free(p);
    }
};

struct FreeC {
    void operator()(void* p) const noexcept { std::free(p); }
};

using InodeMem = std::unique_ptr<sqfs_inode_generic_t, FreeC>;

class SquashSink : public Sink {
public:
    SquashSink(const fs::path& dest, const SquashOptions& opts);
    ~SquashSink() override;
    void add(const Entry& e, Source& src) override;
    void commit() override;

private:
    // Errors.
    [[noreturn]] void fail_entry(const Entry& e, std::string_view why) const;
    void check(int code, std::string_view context) const;

    // The tree.
    std::vector<std::string_view> split_path(const Entry& e, std::string_view path) const;
    Node* parent_dir(const Entry& e, const std::vector<std::string_view>& parts, bool create);
    NodePtr find(const std::vector<std::string_view>& parts) const;
    void place(Node& parent, std::string_view name, NodePtr node);
    std::vector<Xattr> clean_xattrs(const Entry& e) const;

    // File data.
    void stream_plain(const Entry& e, Source& src);
    void stream_sparse(const Entry& e, Source& src, std::vector<Run>& runs);
    std::size_t read_exactly(const Entry& e, Source& src, unsigned char* buf, std::size_t n,
                             std::uint64_t done, std::uint64_t total);

    // commit().
    void finish();
    std::uint32_t number_inodes();
    void write_tree(std::uint32_t inode_count);
    void write_leaf(Node& n);
    void write_dir(Node& n, std::uint32_t parent_number);
    InodeMem file_inode(const Node& n);
    std::uint32_t xattr_index(const Node& n);
    void set_base(sqfs_inode_generic_t& ino, const Node& n);
    void write_inode(const sqfs_inode_generic_t& ino, Node& n);

    fs::path dest_;
    std::string what_; // "can't write DEST"
    std::uint32_t block_size_;
    int comp_; // SQFS_COMPRESSOR, checked before anything is created
    storage::Staged staged_;
    Ptr<sqfs_file_t> file_;
    Ptr<sqfs_compressor_t> cmp_;
    Ptr<sqfs_compressor_t> uncmp_;
    sqfs_super_t super_{};
    Ptr<sqfs_frag_table_t> frags_;
    Ptr<sqfs_block_writer_t> blocks_;
    InodeArena arena_;
    Ptr<sqfs_block_processor_t> proc_; // declared last: destroyed first
    // Used only during commit().
    Ptr<sqfs_meta_writer_t> inode_mw_;
    Ptr<sqfs_meta_writer_t> dir_mw_;
    Ptr<sqfs_dir_writer_t> dirs_;
    Ptr<sqfs_id_table_t> ids_;
    Ptr<sqfs_xattr_writer_t> xattrs_;

    NodePtr root_;
    std::vector<unsigned char> buf_;
    bool broken_ = false;
    bool committed_ = false;
    bool in_file_ = false;  // between begin_file and end_file
    bool finished_ = false; // the processor has been told to finish
};

// The compressor's id, once the options are known to be usable: bad options
// are refused before a staging file exists.
int checked_compressor(const fs::path& dest, const SquashOptions& opts) {
    if (const std::string why = squash_options_problem(opts); !why.empty())
        throw UsageError(cat("can't write ", dest.string(), ": ", why));
    return squash_compressor_id(opts.compressor);
}

SquashSink::SquashSink(const fs::path& dest, const SquashOptions& opts)
    : dest_(dest)
    , what_(cat("can't write ", dest.string()))
    , block_size_(opts.block_size)
    , comp_(checked_compressor(dest, opts))
    , staged_(dest, storage::StagedKind::file) {
    sqfs_compressor_config_t cfg{};
    int r = sqfs_compressor_config_init(&cfg, static_cast<SQFS_COMPRESSOR>(comp_), block_size_, 0);
    check(r, "compressor settings");
    if (comp_ == SQFS_COMP_GZIP)
        cfg.level = squash_gzip_write_level;
    check(make_compressor(cfg, cmp_), "compressor");
    // A decompressor lets the processor compare a fragment with its possible
    // duplicate byte for byte instead of trusting a 32-bit hash.
    cfg.flags |= SQFS_COMP_FLAG_UNCOMPRESS;
    check(make_compressor(cfg, uncmp_), "decompressor");

    file_ = open_file(staged_.path(), Access::write);
    check(sqfs_super_init(&super_, block_size_, image_mtime, static_cast<SQFS_COMPRESSOR>(comp_)),
          "superblock");
    // A placeholder superblock now, the real one at the end; the compressor
    // options (if not the defaults) follow it directly.
    check(sqfs_super_write(&super_, file_.get()), "superblock");
    r = cmp_->write_options(cmp_.get(), file_.get());
    check(r, "compressor options");
    if (r > 0)
        super_.flags |= SQFS_FLAG_COMPRESSOR_OPTIONS;

    frags_.reset(sqfs_frag_table_create(0));
    if (!frags_)
        check(SQFS_ERROR_ALLOC, "fragment table");
    blocks_.reset(sqfs_block_writer_create(file_.get(), device_block, 0));
    if (!blocks_)
        check(SQFS_ERROR_ALLOC, "block writer");

    const unsigned workers = opts.threads != 0 ? opts.threads : usable_cpus();
    // Blocks in flight. Every file's tail end is one too, and the processor
    // hands finished blocks on in order only, so behind one big block being
    // compressed, the tails of many small files pile up finished; when the
    // backlog is full, the other workers starve. Measured on 2 CPUs with a
    // tree of 35 000 mostly small files: 16 blocks left each worker idle
    // 3.5 s of 12, 192 blocks about 0.5 s (the serial metadata at the end).
    // Each block in flight holds a block-sized buffer, so the backlog is set
    // in bytes: 24 MiB (192 blocks of 128 KiB) keeps the peak RSS near 50 MiB.
    const std::size_t backlog =
        std::clamp<std::size_t>(opts.backlog_bytes / block_size_, 4 * workers + 4, 4096);
    sqfs_block_processor_desc_t desc{};
    desc.size = sizeof desc;
    desc.max_block_size = block_size_;
    desc.num_workers = workers;
    desc.max_backlog = static_cast<sqfs_u32>(backlog);
    desc.cmp = cmp_.get();
    desc.wr = blocks_.get();
    desc.tbl = frags_.get();
    desc.file = file_.get();
    desc.uncmp = uncmp_.get();
    sqfs_block_processor_t* p = nullptr;
    check(sqfs_block_processor_create_ex(&desc, &p), "block processor");
    proc_.reset(p);
    log::debug("squash sink ", dest_.string(), ": ", opts.compressor, ", block size ", block_size_,
               ", ", workers, " worker threads, backlog ", backlog, " blocks");

    root_ = make_dir_node(0755, 0, 0, 0);
    buf_.resize(block_size_);
}

SquashSink::~SquashSink() {
    // The staged file goes with staged_ unless published. libsquashfs 1.2
    // leaks the blocks of a file in progress and the pending fragment block
    // if its processor is destroyed before finishing, so finish into the
    // doomed staging file first (errors don't matter any more).
    if (proc_ && !finished_) {
        if (in_file_)
            sqfs_block_processor_end_file(proc_.get());
        sqfs_block_processor_finish(proc_.get());
    }
    // Stop the workers before anything they point into is freed, and release
    // the tree without recursion (it may be deep).
    proc_.reset();
    release(std::move(root_));
}

void SquashSink::fail_entry(const Entry& e, std::string_view why) const {
    throw Error(cat(what_, ": entry '", printable(e.path), "': ", why));
}

void SquashSink::check(int code, std::string_view context) const {
    if (code >= 0)
        return;
    if (context.empty())
        throw Error(cat(what_, ": ", error_words(code, file_.get())), Exit::squash);
    throw Error(cat(what_, ": ", context, ": ", error_words(code, file_.get())), Exit::squash);
}

std::vector<std::string_view> SquashSink::split_path(const Entry& e, std::string_view path) const {
    std::vector<std::string_view> parts;
    if (path.empty())
        return parts;
    std::size_t start = 0;
    while (true) {
        const std::size_t slash = path.find('/', start);
        const std::string_view part = path.substr(
            start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        if (part.empty() || part == "." || part == "..")
            fail_entry(e, "path has an empty, '.' or '..' component");
        if (part.find('\0') != std::string_view::npos)
            fail_entry(e, "path contains a NUL byte");
        if (part.size() > name_max)
            throw Error(cat(what_, ": entry '", printable(e.path), "': name '",
                            printable(part.substr(0, 32)), "...' is ", part.size(),
                            " bytes long; SquashFS names are limited to 256 bytes and Linux names "
                            "to ",
                            name_max),
                        Exit::squash);
        parts.push_back(part);
        if (slash == std::string_view::npos)
            break;
        start = slash + 1;
    }
    return parts;
}

// The directory that holds the last component of parts; missing directories
// on the way are created (mode 0755) if create, else nullptr is returned.
Node* SquashSink::parent_dir(const Entry& e, const std::vector<std::string_view>& parts,
                             bool create) {
    Node* dir = root_.get();
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        auto it = dir->children->find(parts[i]);
        if (it == dir->children->end()) {
            if (!create)
                return nullptr;
            it = dir->children->emplace(std::string(parts[i]), make_dir_node(0755, 0, 0, 0)).first;
        } else if (!it->second->is_dir()) {
            if (!create)
                return nullptr;
            std::string prefix;
            for (std::size_t j = 0; j <= i; ++j)
                prefix += (j ? "/" : "") + std::string(parts[j]);
            fail_entry(e, cat("'", printable(prefix), "' is not a directory"));
        }
        dir = it->second.get();
    }
    return dir;
}

NodePtr SquashSink::find(const std::vector<std::string_view>& parts) const {
    NodePtr cur = root_;
    for (const auto part : parts) {
        if (!cur->is_dir())
            return nullptr;
        const auto it = cur->children->find(part);
        if (it == cur->children->end())
            return nullptr;
        cur = it->second;
    }
    return cur;
}

void SquashSink::place(Node& parent, std::string_view name, NodePtr node) {
    const auto it = parent.children->find(name);
    if (it == parent.children->end()) {
        parent.children->emplace(std::string(name), std::move(node));
        return;
    }
    NodePtr old = std::exchange(it->second, std::move(node));
    release(std::move(old));
}

std::vector<Xattr> SquashSink::clean_xattrs(const Entry& e) const {
    // Sorted and unique (the last value of a repeated name wins): the xattr
    // writer stores pairs in the order given, and the output must not
    // depend on the order a source lists them in.
    std::map<std::string, std::string> m;
    for (const auto& x : e.xattrs) {
        if (x.name.find('\0') != std::string::npos || sqfs_get_xattr_prefix_id(x.name.c_str()) < 0)
            throw Error(cat(what_, ": entry '", printable(e.path), "': xattr '", printable(x.name),
                            "': SquashFS stores only user.*, trusted.* and security.* attributes"),
                        Exit::squash);
        m[x.name] = x.value;
    }
    std::vector<Xattr> out;
    out.reserve(m.size());
    for (auto& kv : m)
        out.push_back(Xattr{kv.first, std::move(kv.second)});
    return out;
}

void SquashSink::add(const Entry& e, Source& src) {
    if (committed_)
        throw Error(cat(what_, ": entry '", printable(e.path), "' added after commit"),
                    Exit::squash);
    if (broken_)
        throw Error(cat(what_, ": the image is incomplete after an earlier error"), Exit::squash);

    const std::vector<std::string_view> parts = split_path(e, e.path);
    if (e.type == EntryType::whiteout) {
        if (parts.empty()) { // the root stays, its contents go
            for (auto& kv : *root_->children)
                release(std::move(kv.second));
            root_->children->clear();
            return;
        }
        Node* dir = parent_dir(e, parts, false);
        if (dir == nullptr)
            return;
        const auto it = dir->children->find(parts.back());
        if (it != dir->children->end()) {
            NodePtr gone = std::move(it->second);
            dir->children->erase(it);
            release(std::move(gone));
        }
        return;
    }

    switch (e.type) {
    case EntryType::dir:
    case EntryType::file:
    case EntryType::symlink:
    case EntryType::hardlink:
        break;
    default:
        fail_entry(e,
                   cat("is ", kind_words(e.type),
                       ", which the SquashFS sink does not store (the unpacking rules drop them)"));
    }
    if (parts.empty() && e.type != EntryType::dir)
        fail_entry(e, "the image root must be a directory");

    const auto perm = static_cast<std::uint16_t>(e.mode & 07777);
    const std::uint32_t mtime = clamp_time(e.mtime);
    if (e.type == EntryType::hardlink) {
        const std::vector<std::string_view> tparts = split_path(e, e.link_target);
        NodePtr target = find(tparts);
        if (!target)
            fail_entry(
                e, cat("hard link target '", printable(e.link_target), "' is not in the image"));
        if (target->is_dir())
            fail_entry(e, cat("hard link target '", printable(e.link_target), "' is a directory"));
        Node* dir = parent_dir(e, parts, true);
        place(*dir, parts.back(), std::move(target));
        return;
    }

    Node* dir = parts.empty() ? nullptr : parent_dir(e, parts, true);
    std::vector<Xattr> xattrs = clean_xattrs(e);
    if (e.type == EntryType::dir) {
        Node* existing = nullptr;
        if (parts.empty()) {
            existing = root_.get();
        } else {
            const auto it = dir->children->find(parts.back());
            if (it != dir->children->end() && it->second->is_dir())
                existing = it->second.get();
        }
        if (existing != nullptr) { // dir over dir: new metadata, same children
            existing->perm = perm;
            existing->uid = e.uid;
            existing->gid = e.gid;
            existing->mtime = mtime;
            existing->xattrs = std::move(xattrs);
        } else {
            NodePtr n = make_dir_node(perm, e.uid, e.gid, mtime);
            n->xattrs = std::move(xattrs);
            place(*dir, parts.back(), std::move(n));
        }
        return;
    }

    auto n = std::make_shared<Node>();
    n->type = e.type;
    n->perm = perm;
    n->uid = e.uid;
    n->gid = e.gid;
    n->mtime = mtime;
    n->xattrs = std::move(xattrs);
    if (e.type == EntryType::symlink) {
        n->target = e.link_target;
    } else {
        n->size = e.size;
        if (e.sparse) { // check the map before any data moves
            std::uint64_t end = 0;
            for (const auto& x : *e.sparse)
                if (x.offset < end || x.length > e.size || x.offset > e.size - x.length)
                    fail_entry(e, "sparse map is out of order or reaches past the file size");
                else
                    end = x.offset + x.length;
        }
        arena_.slots.push_back(nullptr);
        n->slot = arena_.slots.size() - 1;
        // From here on a failure leaves the processor inside a file: the
        // image can't be finished.
        broken_ = true;
        check(sqfs_block_processor_begin_file(proc_.get(), &arena_.slots.back(), nullptr, 0),
              cat("entry '", printable(e.path), "'"));
        in_file_ = true;
        if (e.sparse) {
            n->runs = std::make_unique<std::vector<Run>>();
            stream_sparse(e, src, *n->runs);
        } else {
            stream_plain(e, src);
        }
        in_file_ = false;
        check(sqfs_block_processor_end_file(proc_.get()), cat("entry '", printable(e.path), "'"));
        broken_ = false;
    }
    place(*dir, parts.back(), std::move(n));
}

std::size_t SquashSink::read_exactly(const Entry& e, Source& src, unsigned char* buf, std::size_t n,
                                     std::uint64_t done, std::uint64_t total) {
    std::size_t got = 0;
    while (got < n) {
        const std::size_t r = src.read(buf + got, n - got);
        if (r == 0)
            throw Error(cat(what_, ": entry '", printable(e.path), "': ", src.describe(),
                            " ended after ", done + got, " of ", total, " bytes"));
        got += r;
    }
    return got;
}

void SquashSink::stream_plain(const Entry& e, Source& src) {
    std::uint64_t done = 0;
    while (done < e.size) {
        const auto n =
            static_cast<std::size_t>(std::min<std::uint64_t>(buf_.size(), e.size - done));
        read_exactly(e, src, buf_.data(), n, done, e.size);
        check(sqfs_block_processor_append(proc_.get(), buf_.data(), n),
              cat("entry '", printable(e.path), "'"));
        done += n;
    }
}

// Only the blocks that hold data go through the processor (holes inside
// them as zeros); whole-block holes are never materialised, so a 5 GiB file
// with a few KiB of data costs a few KiB of work. commit() puts the holes
// back into the block list as sparse (zero-size) blocks.
void SquashSink::stream_sparse(const Entry& e, Source& src, std::vector<Run>& runs) {
    const std::uint64_t bs = block_size_;
    const std::uint64_t total = [&] {
        std::uint64_t t = 0;
        for (const auto& x : *e.sparse)
            t += x.length;
        return t;
    }();
    std::uint64_t done = 0;
    std::uint64_t cur = std::numeric_limits<std::uint64_t>::max(); // block in buf_
    auto flush = [&] {
        if (cur == std::numeric_limits<std::uint64_t>::max())
            return;
        const std::uint64_t len = std::min(bs, e.size - cur * bs);
        check(sqfs_block_processor_append(proc_.get(), buf_.data(), static_cast<std::size_t>(len)),
              cat("entry '", printable(e.path), "'"));
        if (!runs.empty() && runs.back().first + runs.back().count == cur)
            ++runs.back().count;
        else
            runs.push_back(Run{cur, 1});
    };
    for (const auto& x : *e.sparse) {
        std::uint64_t off = x.offset;
        std::uint64_t left = x.length;
        while (left > 0) {
            const std::uint64_t b = off / bs;
            if (b != cur) {
                flush();
                cur = b;
                std::memset(buf_.data(), 0, buf_.size());
            }
            const std::uint64_t in = off % bs;
            const std::uint64_t n = std::min(left, bs - in);
            read_exactly(e, src, buf_.data() + in, static_cast<std::size_t>(n), done, total);
            done += n;
            off += n;
            left -= n;
        }
    }
    flush();
}

void SquashSink::commit() {
    if (committed_)
        return;
    if (broken_)
        throw Error(cat(what_, ": the image is incomplete after an earlier error"), Exit::squash);
    broken_ = true;
    finish();
    file_.reset(); // close before the rename: nothing may write after publish
    staged_.publish();
    broken_ = false;
    committed_ = true;
}

void SquashSink::finish() {
    finished_ = true;
    check(sqfs_block_processor_finish(proc_.get()), "file data");
    {
        const sqfs_block_processor_stats_t* st = sqfs_block_processor_get_stats(proc_.get());
        log::debug("squash sink ", dest_.string(), ": ", st->input_bytes_read, " bytes in, ",
                   st->data_block_count, " data blocks, ", st->frag_block_count,
                   " fragment blocks, ", st->sparse_block_count, " sparse blocks, ",
                   st->actual_frag_count, " of ", st->total_frag_count, " fragments stored");
    }
    const std::uint32_t count = number_inodes();
    write_tree(count);

    check(sqfs_frag_table_write(frags_.get(), file_.get(), &super_, cmp_.get()), "fragment table");
    check(sqfs_id_table_write(ids_.get(), file_.get(), &super_, cmp_.get()), "id table");
    check(sqfs_xattr_writer_flush(xattrs_.get(), file_.get(), &super_, cmp_.get()), "xattr table");

    super_.inode_count = count;
    super_.bytes_used = file_->get_size(file_.get());
    // Pad to a multiple of 4 KiB, as loop devices and mksquashfs expect.
    const std::uint64_t pad = (device_block - super_.bytes_used % device_block) % device_block;
    if (pad > 0) {
        const std::vector<unsigned char> zeros(pad, 0);
        check(file_->write_at(file_.get(), super_.bytes_used, zeros.data(), zeros.size()),
              "padding");
    }
    check(sqfs_super_write(&super_, file_.get()), "superblock");
}

// Inode numbers 1..N in the order the inodes are written: post-order, each
// directory's entries by name, so the numbers follow from the entries alone.
// Also counts links: a directory has 2 plus one per subdirectory, anything
// else one per directory entry naming it.
std::uint32_t SquashSink::number_inodes() {
    std::uint64_t count = 0;

    struct Frame {
        Node* dir;
        Children::iterator it;
    };

    std::vector<Frame> stack{{root_.get(), root_->children->begin()}};
    root_->nlink = 2;
    while (!stack.empty()) {
        Frame& f = stack.back();
        if (f.it == f.dir->children->end()) {
            f.dir->number = static_cast<std::uint32_t>(++count);
            stack.pop_back();
            continue;
        }
        Node& child = *(f.it++)->second;
        if (child.is_dir()) {
            ++f.dir->nlink;
            child.nlink = 2;
            stack.push_back(Frame{&child, child.children->begin()});
            continue;
        }
        if (child.nlink++ == 0)
            child.number = static_cast<std::uint32_t>(++count);
        if (count >= std::numeric_limits<std::uint32_t>::max())
            check(SQFS_ERROR_OVERFLOW, "too many inodes");
    }
    return static_cast<std::uint32_t>(count);
}

void SquashSink::write_tree(std::uint32_t inode_count) {
    inode_mw_.reset(sqfs_meta_writer_create(file_.get(), cmp_.get(), 0));
    // The directory table follows the inode table, but listings are made
    // while inodes are written: keep them in memory (compressed) till then.
    dir_mw_.reset(
        sqfs_meta_writer_create(file_.get(), cmp_.get(), SQFS_META_WRITER_KEEP_IN_MEMORY));
    if (!inode_mw_ || !dir_mw_)
        check(SQFS_ERROR_ALLOC, "inode table");
    dirs_.reset(sqfs_dir_writer_create(dir_mw_.get(), 0));
    ids_.reset(sqfs_id_table_create(0));
    xattrs_.reset(sqfs_xattr_writer_create(0));
    if (!dirs_ || !ids_ || !xattrs_)
        check(SQFS_ERROR_ALLOC, "directory table");

    super_.inode_table_start = file_->get_size(file_.get());

    struct Frame {
        Node* dir;
        Children::iterator it;
    };

    std::vector<Frame> stack{{root_.get(), root_->children->begin()}};
    while (!stack.empty()) {
        Frame& f = stack.back();
        if (f.it == f.dir->children->end()) {
            Node* dir = f.dir;
            stack.pop_back();
            // The root's parent is one past the last inode, as in mksquashfs.
            write_dir(*dir, stack.empty() ? inode_count + 1 : stack.back().dir->number);
            continue;
        }
        Node& child = *(f.it++)->second;
        if (child.is_dir())
            stack.push_back(Frame{&child, child.children->begin()});
        else if (!child.written)
            write_leaf(child);
    }
    super_.root_inode_ref = root_->ref;
    check(sqfs_meta_writer_flush(inode_mw_.get()), "inode table");
    super_.directory_table_start = file_->get_size(file_.get());
    check(sqfs_meta_writer_flush(dir_mw_.get()), "directory table");
    check(sqfs_meta_write_write_to_file(dir_mw_.get()), "directory table");
}

std::uint32_t SquashSink::xattr_index(const Node& n) {
    if (n.xattrs.empty())
        return no_xattr;
    check(sqfs_xattr_writer_begin(xattrs_.get(), 0), "xattrs");
    for (const auto& x : n.xattrs)
        check(sqfs_xattr_writer_add(xattrs_.get(), x.name.c_str(), x.value.data(), x.value.size()),
              cat("xattr ", printable(x.name)));
    std::uint32_t idx = no_xattr;
    check(sqfs_xattr_writer_end(xattrs_.get(), &idx), "xattrs");
    return idx;
}

void SquashSink::set_base(sqfs_inode_generic_t& ino, const Node& n) {
    sqfs_u16 uid = 0, gid = 0;
    check(sqfs_id_table_id_to_index(ids_.get(), n.uid, &uid), "id table (more than 65536 ids?)");
    check(sqfs_id_table_id_to_index(ids_.get(), n.gid, &gid), "id table (more than 65536 ids?)");
    ino.base.mode = static_cast<sqfs_u16>(type_bits(n.type) | n.perm);
    ino.base.uid_idx = uid;
    ino.base.gid_idx = gid;
    ino.base.mod_time = n.mtime;
    ino.base.inode_number = n.number;
}

void SquashSink::write_inode(const sqfs_inode_generic_t& ino, Node& n) {
    sqfs_u64 block = 0;
    sqfs_u32 offset = 0;
    sqfs_meta_writer_get_position(inode_mw_.get(), &block, &offset);
    n.ref = (block << 16) | offset;
    check(sqfs_meta_writer_write_inode(inode_mw_.get(), &ino), "inode table");
    n.written = true;
}

void SquashSink::write_leaf(Node& n) {
    InodeMem ino;
    if (n.type == EntryType::file) {
        ino = file_inode(n);
        if (n.nlink > 1) { // only the extended file inode has a link count
            check(sqfs_inode_make_extended(ino.get()), "inode");
            ino->data.file_ext.nlink = n.nlink;
        }
    } else { // symlink
        const std::size_t len = n.target.size();
        ino.reset(static_cast<sqfs_inode_generic_t*>(
            std::calloc(1, sizeof(sqfs_inode_generic_t) + len + 1)));
        if (!ino)
            check(SQFS_ERROR_ALLOC, "inode");
        ino->base.type = SQFS_INODE_SLINK;
        ino->data.slink.nlink = n.nlink;
        ino->data.slink.target_size = static_cast<sqfs_u32>(len);
        ino->payload_bytes_available = ino->payload_bytes_used = static_cast<sqfs_u32>(len);
        std::memcpy(ino->extra, n.target.data(), len);
    }
    check(sqfs_inode_set_xattr_index(ino.get(), xattr_index(n)), "inode");
    set_base(*ino, n);
    write_inode(*ino, n);
}

void SquashSink::write_dir(Node& n, std::uint32_t parent_number) {
    check(sqfs_dir_writer_begin(dirs_.get(), 0), "directory table");
    for (const auto& [name, child] : *n.children)
        check(
            sqfs_dir_writer_add_entry(dirs_.get(), name.c_str(), child->number, child->ref,
                                      static_cast<sqfs_u16>(type_bits(child->type) | child->perm)),
            "directory table");
    check(sqfs_dir_writer_end(dirs_.get()), "directory table");
    const std::uint32_t xattr = xattr_index(n);
    InodeMem ino(sqfs_dir_writer_create_inode(dirs_.get(), 0, xattr, parent_number));
    if (!ino)
        check(SQFS_ERROR_ALLOC, "directory inode");
    // libsquashfs 1.2 counts one link per entry; the convention (mksquashfs,
    // ext4) is 2 plus one per subdirectory.
    if (ino->base.type == SQFS_INODE_EXT_DIR)
        ino->data.dir_ext.nlink = n.nlink;
    else
        ino->data.dir.nlink = n.nlink;
    set_base(*ino, n);
    write_inode(*ino, n);
}

// The file's final inode: the processor's, or for a sparse file with holes,
// a copy whose block list has the holes put back as zero-size blocks.
InodeMem SquashSink::file_inode(const Node& n) {
    const sqfs_inode_generic_t* in = arena_.slots.at(n.slot);
    if (in == nullptr)
        check(SQFS_ERROR_INTERNAL, "file inode");
    const std::size_t in_count = sqfs_inode_get_file_block_count(in);
    const std::uint64_t bs = block_size_;
    const std::uint64_t full = n.size / bs;
    const std::uint64_t tail = n.size % bs;

    std::vector<sqfs_u32> sizes;
    if (n.runs) {
        sqfs_u32 frag_idx = 0xFFFFFFFF, frag_off = 0xFFFFFFFF;
        sqfs_inode_get_frag_location(in, &frag_idx, &frag_off);
        const bool tail_fed =
            tail > 0 && !n.runs->empty() && n.runs->back().first + n.runs->back().count == full + 1;
        const bool tail_in_frag = tail_fed && frag_idx != 0xFFFFFFFF;
        const std::uint64_t out_count = full + (tail > 0 && !tail_in_frag ? 1 : 0);
        if (out_count > (std::numeric_limits<sqfs_u32>::max() - sizeof(sqfs_inode_generic_t)) / 4)
            check(SQFS_ERROR_OVERFLOW, "file inode");
        sizes.assign(static_cast<std::size_t>(out_count), 0);
        std::size_t j = 0;
        for (const Run& r : *n.runs)
            for (std::uint64_t i = r.first; i < r.first + r.count; ++i) {
                if (i == full && tail_in_frag)
                    continue;
                if (j >= in_count || i >= out_count)
                    check(SQFS_ERROR_INTERNAL, "sparse file layout");
                sizes[static_cast<std::size_t>(i)] = in->extra[j++];
            }
        if (j != in_count)
            check(SQFS_ERROR_INTERNAL, "sparse file layout");
    } else {
        sizes.assign(in->extra, in->extra + in_count);
    }

    const std::size_t payload = sizes.size() * sizeof(sqfs_u32);
    InodeMem out(
        static_cast<sqfs_inode_generic_t*>(std::malloc(sizeof(sqfs_inode_generic_t) + payload)));
    if (!out)
        check(SQFS_ERROR_ALLOC, "file inode");
    std::memcpy(out.get(), in, sizeof(sqfs_inode_generic_t));
    out->payload_bytes_available = out->payload_bytes_used = static_cast<sqfs_u32>(payload);
    if (payload > 0)
        std::memcpy(out->extra, sizes.data(), payload);
    check(sqfs_inode_set_file_size(out.get(), n.size), "file inode");
    if (n.runs) {
        std::uint64_t holes = 0;
        for (std::size_t i = 0; i < sizes.size(); ++i)
            if (SQFS_IS_SPARSE_BLOCK(sizes[i]))
                holes += (i < full) ? bs : tail;
        if (holes > 0) {
            check(sqfs_inode_make_extended(out.get()), "file inode");
            out->data.file_ext.sparse = holes;
        }
    }
    return out;
}

} // namespace

std::unique_ptr<Sink> make_squash_sink(const fs::path& dest, const SquashOptions& opts) {
    return std::make_unique<SquashSink>(dest, opts);
}

} // namespace ch::image

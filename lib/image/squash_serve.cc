// squash_serve.cc: see squash_serve.hh. The FUSE server's low-level
// operations, written on libsquashfuse's public sqfs_* API.
//
// Thread safety by construction: Debian 12's libsquashfuse (0.1.105) keeps
// unlocked caches in struct sqfs (metadata, data and fragment blocks, block
// index), so no two threads may share one. Each request borrows a whole
// instance from a pool (sqfs_init on the same read-only descriptor; all reads
// are pread), and node ids are computed, not looked up (node_of_inode), so
// the instances share nothing but that descriptor and the data-block cache
// (BlockCache), which is ours, behind its own lock. A few more threads
// (Prefetcher) inflate the blocks that reads will probably want next.
//
// FUSE callbacks are C: nothing may throw through them. guarded() turns an
// exception into an error reply, and every operation replies exactly once,
// as its last statement.
#include "image/squash_serve.hh"

// libsquashfuse's config.h (pulled in by its headers) defines FUSE_USE_VERSION
// 32 and _POSIX_C_SOURCE; include it first, then pick libfuse's 3.12 API.
extern "C" {
#include <squashfuse/squashfuse.h>
}
#undef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <sched.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <vector>

#include "image/image.hh"
#include "image/squash_compressors.hh"
#include "util/error.hh"
#include "util/log.hh"

namespace ch::image {

namespace {

// The image never changes under a mount, so the kernel may cache names,
// attributes, symlinks, pages and listings for as long as it likes.
constexpr double cache_timeout_s = 365.0 * 24 * 3600;
// No legitimate symlink target or xattr value comes near these; a damaged or
// hostile image could claim up to 4 GiB.
constexpr std::size_t max_symlink = 65536;
constexpr std::size_t max_xattr_value = 65536; // XATTR_SIZE_MAX
constexpr int max_symlinks_followed = 40;      // the kernel's MAXSYMLINKS

// More metadata blocks (8 KiB each) per instance than libsquashfuse's
// default, for big directories. File data does not go through the
// instance's caches at all (BlockCache below).
void widen_md_cache(sqfs* fs) {
    sqfs_cache bigger;
    if (sqfs_block_cache_init(&bigger, 32) != SQFS_OK)
        return; // the old one stays
    sqfs_cache_destroy(&fs->md_cache);
    fs->md_cache = bigger;
}

// Where a data or fragment block sits in the image: its position and its
// SquashFS size header (which says whether it is compressed).
struct BlockKey {
    std::uint64_t pos = 0;
    std::uint32_t hdr = 0;
    auto operator<=>(const BlockKey&) const = default;
};

// Decompressed data and fragment blocks, shared by all threads. The kernel's
// reads (128 KiB read-ahead windows, page faults of exec and mmap) rarely
// line up with SquashFS blocks, so two requests served at once usually want
// one block between them; with a cache per instance each thread inflated it
// again (exec of busybox-static: 21 blocks inflated, 13 different). Here a
// block is inflated once: a thread that wants a block another thread is
// inflating (a request's or the prefetcher's) waits for it, and the least
// recently used blocks go first.
class BlockCache {
public:
    // A decompressed block; kept alive by whoever still replies from it.
    struct Block {
        enum class State { empty, loading, ready };
        State state = State::empty; // guarded by the cache's lock
        sqfs_block* data = nullptr; // set once ready; null if unreadable

        Block() = default;
        Block(const Block&) = delete;
        Block& operator=(const Block&) = delete;
        ~Block() {
            if (data != nullptr)
                sqfs_block_dispose(data);
        }
    };

    explicit BlockCache(std::size_t capacity)
        : capacity_(std::max<std::size_t>(capacity, 2)) {}

    // The block at key, read and inflated with fs (this thread's instance)
    // unless it is cached or another thread is at it; null if it can't be
    // read.
    std::shared_ptr<const Block> get(sqfs* fs, const BlockKey& key) {
        std::unique_lock<std::mutex> lock(mu_);
        std::shared_ptr<Block> b = slot(key);
        if (b->state == Block::State::empty)
            load(fs, key, b, lock);
        else
            done_.wait(lock, [&] { return b->state == Block::State::ready; });
        if (b->data != nullptr)
            return b;
        forget(key, b); // unreadable: tried again next time
        return nullptr;
    }

    // Read and inflate the block at key if nobody has yet; never waits for
    // another thread. For the prefetcher.
    void prefetch(sqfs* fs, const BlockKey& key) {
        std::unique_lock<std::mutex> lock(mu_);
        std::shared_ptr<Block> b = slot(key);
        if (b->state != Block::State::empty)
            return;
        load(fs, key, b, lock);
        if (b->data == nullptr)
            forget(key, b);
    }

    // Whether the block is cached or being inflated (no use prefetching it).
    bool has(const BlockKey& key) {
        const std::lock_guard<std::mutex> lock(mu_);
        return slots_.count(key) != 0;
    }

    std::size_t capacity() const { return capacity_; }

private:
    struct Slot {
        std::shared_ptr<Block> block;
        std::list<BlockKey>::iterator age; // its place in lru_
    };

    // The block for key, made (empty) if new; it becomes the most recent.
    std::shared_ptr<Block> slot(const BlockKey& key) {
        if (const auto it = slots_.find(key); it != slots_.end()) {
            lru_.splice(lru_.begin(), lru_, it->second.age);
            return it->second.block;
        }
        auto b = std::make_shared<Block>();
        lru_.push_front(key);
        slots_.emplace(key, Slot{b, lru_.begin()});
        if (slots_.size() > capacity_) { // the evicted block lives on where it is in use
            slots_.erase(lru_.back());
            lru_.pop_back();
        }
        return b;
    }

    // Inflate b outside the lock (lock is held on entry and on return).
    void load(sqfs* fs, const BlockKey& key, const std::shared_ptr<Block>& b,
              std::unique_lock<std::mutex>& lock) {
        b->state = Block::State::loading;
        lock.unlock();
        sqfs_block* data = nullptr;
        if (sqfs_data_block_read(fs, static_cast<sqfs_off_t>(key.pos), key.hdr, &data) != SQFS_OK)
            data = nullptr;
        lock.lock();
        b->data = data;
        b->state = Block::State::ready;
        done_.notify_all();
    }

    void forget(const BlockKey& key, const std::shared_ptr<Block>& b) {
        if (const auto it = slots_.find(key); it != slots_.end() && it->second.block == b) {
            lru_.erase(it->second.age);
            slots_.erase(it);
        }
    }

    std::size_t capacity_;
    std::mutex mu_;
    std::condition_variable done_; // a block became ready
    std::map<BlockKey, Slot> slots_;
    std::list<BlockKey> lru_; // most recently used first
};

// One libsquashfuse instance with its caches, used by one thread at a time,
// and a buffer for read and readdir replies.
struct Instance {
    sqfs fs{};
    bool live = false;
    std::vector<char> buf;

    Instance() = default;
    Instance(const Instance&) = delete;
    Instance& operator=(const Instance&) = delete;
    ~Instance() {
        if (live)
            sqfs_destroy(&fs);
    }
};

// Instances not in use. A request takes one (creating it if none is free)
// and gives it back, so there are never more instances than threads that
// served at the same time.
class Pool {
public:
    Pool(int fd, std::unique_ptr<Instance> first, std::size_t capacity)
        : fd_(fd) {
        free_.reserve(capacity);
        free_.push_back(std::move(first));
    }
    std::unique_ptr<Instance> take() {
        {
            const std::lock_guard<std::mutex> lock(mu_);
            if (!free_.empty()) {
                auto in = std::move(free_.back());
                free_.pop_back();
                return in;
            }
        }
        auto in = std::make_unique<Instance>();
        if (sqfs_init(&in->fs, fd_, 0) != SQFS_OK)
            throw std::runtime_error("sqfs_init failed");
        in->live = true;
        widen_md_cache(&in->fs);
        return in;
    }
    void give(std::unique_ptr<Instance> in) noexcept {
        const std::lock_guard<std::mutex> lock(mu_);
        if (free_.size() < free_.capacity()) // never allocates; a surplus one is freed
            free_.push_back(std::move(in));
    }

private:
    int fd_;
    std::mutex mu_;
    std::vector<std::unique_ptr<Instance>> free_;
};

class Lease {
public:
    explicit Lease(Pool& pool)
        : pool_(pool)
        , in_(pool.take()) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.give(std::move(in_)); }
    sqfs* fs() { return &in_->fs; }
    // n bytes of scratch space for a reply, kept from one request to the
    // next (it only grows: no zeroing on every read).
    char* scratch(std::size_t n) {
        if (in_->buf.size() < n)
            in_->buf.resize(n);
        return in_->buf.data();
    }

private:
    Pool& pool_;
    std::unique_ptr<Instance> in_;
};

// Inflates blocks that reads will want next, on CPUs that would otherwise
// sit idle while the reading process waits: the kernel asks for one window
// at a time (exec and mmap fault pages in one by one), and inflating is most
// of what a read costs. Speculative work only: a block it has not reached
// when a read wants it is inflated by that read, and a block it fails to read
// is just not cached. The newest reads' blocks go first, and old guesses fall
// off the end of the queue.
class Prefetcher {
public:
    Prefetcher(Pool& pool, BlockCache& blocks, unsigned threads)
        : pool_(pool)
        , blocks_(blocks)
        , max_queued_(blocks.capacity() / 2) {
        threads_.reserve(threads);
        for (unsigned i = 0; i < threads; i++)
            threads_.emplace_back([this] { work(); });
    }
    Prefetcher(const Prefetcher&) = delete;
    Prefetcher& operator=(const Prefetcher&) = delete;
    ~Prefetcher() {
        {
            const std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_)
            t.join();
    }

    // Queue keys, nearest first, ahead of everything queued before.
    void want(const std::vector<BlockKey>& keys) {
        if (threads_.empty() || keys.empty())
            return;
        {
            const std::lock_guard<std::mutex> lock(mu_);
            for (auto it = keys.rbegin(); it != keys.rend(); ++it)
                queue_.push_front(*it);
            while (queue_.size() > max_queued_)
                queue_.pop_back();
        }
        wake_.notify_all();
    }

private:
    void work() noexcept {
        for (;;) {
            BlockKey key;
            {
                std::unique_lock<std::mutex> lock(mu_);
                wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
                if (stop_)
                    return;
                key = queue_.front();
                queue_.pop_front();
            }
            try {
                Lease lease(pool_);
                blocks_.prefetch(lease.fs(), key);
            } catch (...) { // out of memory, or no instance: only a guess is lost
            }
        }
    }

    Pool& pool_;
    BlockCache& blocks_;
    std::size_t max_queued_;
    std::mutex mu_;
    std::condition_variable wake_;
    std::deque<BlockKey> queue_;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};

struct Server {
    Server(int fd, std::unique_ptr<Instance> first, const squashfs_super_block& sb,
           const ServeOptions& opts, unsigned threads, unsigned prefetchers)
        : pool(fd, std::move(first), threads + prefetchers + 1)
        // 8 MiB of decompressed blocks: a few binaries' worth of page faults.
        , blocks(std::max<std::size_t>(8, (std::size_t{8} << 20) / sb.block_size))
        , prefetcher(pool, blocks, prefetchers)
        , zeros(sb.block_size)
        , uid(opts.uid)
        , gid(opts.gid)
        , root_id(sb.root_inode)
        , block_size(sb.block_size)
        , bytes_used(sb.bytes_used)
        , inodes(sb.inodes) {}

    Pool pool;
    BlockCache blocks;
    Prefetcher prefetcher; // after pool and blocks: its threads use them until it goes
    std::vector<char> zeros; // a block of them, for holes
    uid_t uid;
    gid_t gid;
    sqfs_inode_id root_id;
    std::uint32_t block_size;
    std::uint64_t bytes_used;
    std::uint32_t inodes;
};

Server& server_of(fuse_req_t req) { return *static_cast<Server*>(fuse_req_userdata(req)); }

// Run an operation: fn replies and returns 0, or returns the errno to reply.
template <typename Fn>
void guarded(fuse_req_t req, Fn&& fn) noexcept {
    int err = EIO;
    try {
        err = fn();
        if (err == 0)
            return;
    } catch (const std::bad_alloc&) {
        err = ENOMEM;
    } catch (...) {
        err = EIO;
    }
    fuse_reply_err(req, err);
}

int get_inode(sqfs* fs, const Server& s, fuse_ino_t node, sqfs_inode& out) {
    return sqfs_inode_get(fs, &out, inode_of_node(node, s.root_id)) == SQFS_OK ? 0 : EIO;
}

// Most requests name one node: runs fn(server, fs, inode) with a reader from
// the pool held for the whole call, replying with fn's error if it has one.
template <typename Fn>
void with_inode(fuse_req_t req, fuse_ino_t node, Fn&& fn) noexcept {
    guarded(req, [&] {
        Server& s = server_of(req);
        Lease l(s.pool);
        sqfs_inode in;
        if (const int err = get_inode(l.fs(), s, node, in))
            return err;
        return fn(s, l.fs(), in);
    });
}

// Owners are the container user: with a one-line id map the image's own ids
// (often 0) would show up as nobody, and the files are the user's anyway.
struct stat stat_of(const Server& s, const sqfs_inode& in) {
    struct stat st {};
    st.st_ino = in.base.inode_number;
    st.st_mode = in.base.mode; // type bits included by sqfs_inode_get
    st.st_nlink = static_cast<nlink_t>(std::max(in.nlink, 1));
    st.st_uid = s.uid;
    st.st_gid = s.gid;
    st.st_atime = st.st_mtime = st.st_ctime = in.base.mtime;
    st.st_blksize = s.block_size;
    if (S_ISREG(in.base.mode)) {
        st.st_size = static_cast<off_t>(in.xtra.reg.file_size);
        st.st_blocks = static_cast<blkcnt_t>((in.xtra.reg.file_size + 511) / 512);
    } else if (S_ISLNK(in.base.mode)) {
        st.st_size = static_cast<off_t>(in.xtra.symlink_size);
    } else if (S_ISDIR(in.base.mode)) {
        st.st_size = in.xtra.dir.dir_size;
    } else if (S_ISBLK(in.base.mode) || S_ISCHR(in.base.mode)) {
        st.st_rdev = makedev(static_cast<unsigned>(in.xtra.dev.major),
                             static_cast<unsigned>(in.xtra.dev.minor));
    }
    return st;
}

fuse_entry_param entry_of(const Server& s, sqfs_inode_id id, const sqfs_inode& in) {
    fuse_entry_param e{};
    e.ino = node_of_inode(id, s.root_id);
    e.attr = stat_of(s, in);
    e.attr_timeout = cache_timeout_s;
    e.entry_timeout = cache_timeout_s;
    return e;
}

// The inode kept in a file handle (open, opendir): a plain copy, which any
// instance can use (it holds positions in the image, not pointers).
// (fh is libfuse's 64-bit slot for exactly such a pointer.)
sqfs_inode handle_inode(const fuse_file_info* fi) {
    return *reinterpret_cast<const sqfs_inode*>(fi->fh); // NOLINT(performance-no-int-to-ptr)
}

void free_handle(const fuse_file_info* fi) {
    delete reinterpret_cast<sqfs_inode*>(fi->fh); // NOLINT(performance-no-int-to-ptr)
}

std::string read_link(sqfs* fs, sqfs_inode& in) {
    if (in.xtra.symlink_size > max_symlink)
        return {};
    std::size_t size = in.xtra.symlink_size + 1;
    std::string target(size, '\0');
    if (sqfs_readlink(fs, &in, target.data(), &size) != SQFS_OK)
        return {};
    target.resize(std::strlen(target.c_str()));
    return target;
}

// ---- operations --------------------------------------------------------

void op_init(void*, fuse_conn_info* conn) {
    // Nothing ever changes under us: no invalidation on mtime changes, and
    // symlink targets may be cached.
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_AUTO_INVAL_DATA);
    for (const unsigned cap : {unsigned(FUSE_CAP_CACHE_SYMLINKS),
                               unsigned(FUSE_CAP_PARALLEL_DIROPS), unsigned(FUSE_CAP_ASYNC_READ)})
        if (conn->capable & cap)
            conn->want |= cap;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    const std::size_t len = std::strlen(name);
    if (len > SQUASHFS_NAME_LEN) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    with_inode(req, parent, [&](Server& s, sqfs* fs, sqfs_inode& dir) {
        if (!S_ISDIR(dir.base.mode))
            return ENOTDIR;
        sqfs_name namebuf;
        sqfs_dir_entry entry;
        sqfs_dentry_init(&entry, namebuf);
        bool found = false;
        if (sqfs_dir_lookup(fs, &dir, name, len, &entry, &found) != SQFS_OK)
            return EIO;
        if (!found) {
            // A negative entry with a timeout: the kernel remembers that the
            // name is missing (PATH searches, Python's imports).
            fuse_entry_param e{};
            e.entry_timeout = cache_timeout_s;
            fuse_reply_entry(req, &e);
            return 0;
        }
        const sqfs_inode_id id = sqfs_dentry_inode(&entry);
        sqfs_inode child;
        if (sqfs_inode_get(fs, &child, id) != SQFS_OK)
            return EIO;
        const fuse_entry_param e = entry_of(s, id, child);
        fuse_reply_entry(req, &e);
        return 0;
    });
}

// Node ids are computed, so there is no lookup count to keep.
void op_forget(fuse_req_t req, fuse_ino_t, std::uint64_t) { fuse_reply_none(req); }
void op_forget_multi(fuse_req_t req, std::size_t, fuse_forget_data*) { fuse_reply_none(req); }

void op_getattr(fuse_req_t req, fuse_ino_t node, fuse_file_info*) {
    with_inode(req, node, [&](Server& s, sqfs*, sqfs_inode& in) {
        const struct stat st = stat_of(s, in);
        fuse_reply_attr(req, &st, cache_timeout_s);
        return 0;
    });
}

void op_readlink(fuse_req_t req, fuse_ino_t node) {
    with_inode(req, node, [&](Server&, sqfs* fs, sqfs_inode& in) {
        if (!S_ISLNK(in.base.mode))
            return EINVAL;
        const std::string target = read_link(fs, in);
        if (target.empty())
            return EIO;
        fuse_reply_readlink(req, target.c_str());
        return 0;
    });
}

void op_open(fuse_req_t req, fuse_ino_t node, fuse_file_info* fi) {
    guarded(req, [&] {
        if ((fi->flags & O_ACCMODE) != O_RDONLY)
            return EROFS;
        Server& s = server_of(req);
        auto in = std::make_unique<sqfs_inode>();
        {
            Lease l(s.pool);
            if (const int err = get_inode(l.fs(), s, node, *in))
                return err;
        }
        if (S_ISDIR(in->base.mode))
            return EISDIR;
        if (!S_ISREG(in->base.mode))
            return EINVAL;
        fi->fh = reinterpret_cast<std::uint64_t>(in.get());
        fi->keep_cache = 1; // pages stay valid from one open to the next
        fi->noflush = 1;
        if (fuse_reply_open(req, fi) == 0)
            static_cast<void>(in.release()); // freed in op_release
        return 0;
    });
}

// One piece of a read: len bytes at offset at of the block at key, or of
// zeros (a hole, which SquashFS does not store).
struct Span {
    bool hole = false;
    BlockKey key;
    std::size_t at = 0;
    std::size_t len = 0;
};

// Where the bytes [off, off + size) of regular file in are (off + size <=
// its size): full blocks and holes from the block list, the tail from its
// fragment. Also lists up to ahead_max blocks of the file that follow, for
// the prefetcher. Returns 0 or an errno. Positions are checked against the
// file's layout here and against each block actually read later, so a
// damaged or hostile image gives EIO, never a read outside a buffer.
int plan_read(const Server& s, sqfs* fs, sqfs_inode& in, std::uint64_t off, std::size_t size,
              std::vector<Span>& spans, std::vector<BlockKey>& ahead, std::size_t ahead_max) {
    const std::uint64_t file_size = in.xtra.reg.file_size;
    const std::uint64_t bs = s.block_size;
    sqfs_blocklist bl;
    if (sqfs_blockidx_blocklist(fs, &in, &bl, static_cast<sqfs_off_t>(off)) != SQFS_OK)
        return EIO;
    std::size_t done = 0;
    while (done < size) {
        const std::uint64_t at = off + done;
        Span sp;
        std::uint64_t start = 0; // where this block's data starts in the file
        std::size_t avail = 0;   // how many bytes of the file it holds
        std::size_t base = 0;    // where the file's bytes start in the block
        if (bl.remain == 0) { // the tail, packed in a fragment block
            squashfs_fragment_entry frag;
            if (in.xtra.reg.frag_idx == SQUASHFS_INVALID_FRAG ||
                sqfs_frag_entry(fs, &frag, in.xtra.reg.frag_idx) != SQFS_OK)
                return EIO;
            start = file_size - file_size % bs;
            avail = static_cast<std::size_t>(file_size % bs);
            base = in.xtra.reg.frag_off;
            sp.key = {frag.start_block, frag.size};
        } else {
            if (sqfs_blocklist_next(&bl) != SQFS_OK)
                return EIO;
            if (bl.pos + bs <= at)
                continue; // before off: the list starts at an index point before it
            start = bl.pos;
            avail = static_cast<std::size_t>(std::min(bs, file_size - bl.pos));
            sp.hole = bl.input_size == 0;
            sp.key = {bl.block, bl.header};
        }
        if (at < start || at - start >= avail)
            return EIO;
        const std::size_t within = static_cast<std::size_t>(at - start);
        sp.len = std::min(avail - within, size - done);
        sp.at = base + within;
        spans.push_back(sp);
        done += sp.len;
    }
    while (ahead.size() < ahead_max && bl.remain > 0 && sqfs_blocklist_next(&bl) == SQFS_OK)
        if (bl.input_size != 0)
            ahead.push_back({bl.block, bl.header});
    return 0;
}

// How many blocks after a read the prefetcher is asked for: about 1 MiB.
std::size_t prefetch_blocks(std::uint32_t block_size) {
    return std::max<std::size_t>(1, (std::size_t{1} << 20) / std::max<std::uint32_t>(block_size, 1));
}

// Replies straight from the cached blocks (the kernel copies from them into
// the page cache: no copy of ours in between).
void op_read(fuse_req_t req, fuse_ino_t, std::size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, [&] {
        Server& s = server_of(req);
        sqfs_inode in = handle_inode(fi);
        const auto file_size = static_cast<off_t>(in.xtra.reg.file_size);
        if (off < 0)
            return EINVAL;
        if (off >= file_size || size == 0) {
            fuse_reply_buf(req, nullptr, 0);
            return 0;
        }
        const auto want = static_cast<std::size_t>(
            std::min<off_t>(static_cast<off_t>(size), file_size - off));
        Lease l(s.pool);
        std::vector<Span> spans;
        std::vector<BlockKey> later;
        if (const int err = plan_read(s, l.fs(), in, static_cast<std::uint64_t>(off), want, spans,
                                      later, prefetch_blocks(s.block_size)))
            return err;
        // The prefetcher takes this read's other blocks while this thread
        // inflates the first, then the ones after the read.
        std::vector<BlockKey> guess;
        for (std::size_t i = 1; i < spans.size(); i++)
            if (!spans[i].hole)
                guess.push_back(spans[i].key);
        for (const BlockKey& k : later)
            if (!s.blocks.has(k))
                guess.push_back(k);
        s.prefetcher.want(guess);

        std::vector<std::shared_ptr<const BlockCache::Block>> held;
        std::vector<iovec> iov;
        held.reserve(spans.size());
        iov.reserve(spans.size());
        for (const Span& sp : spans) {
            if (sp.hole) {
                if (sp.len > s.zeros.size())
                    return EIO;
                iov.push_back({s.zeros.data(), sp.len});
                continue;
            }
            auto b = s.blocks.get(l.fs(), sp.key);
            if (b == nullptr)
                return EIO; // unreadable: corrupt or truncated
            if (sp.at + sp.len > b->data->size)
                return EIO;
            iov.push_back({static_cast<char*>(b->data->data) + sp.at, sp.len});
            held.push_back(std::move(b));
        }
        fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
        return 0;
    });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    free_handle(fi);
    fuse_reply_err(req, 0);
}

void op_opendir(fuse_req_t req, fuse_ino_t node, fuse_file_info* fi) {
    guarded(req, [&] {
        Server& s = server_of(req);
        auto in = std::make_unique<sqfs_inode>();
        {
            Lease l(s.pool);
            if (const int err = get_inode(l.fs(), s, node, *in))
                return err;
        }
        if (!S_ISDIR(in->base.mode))
            return ENOTDIR;
        fi->fh = reinterpret_cast<std::uint64_t>(in.get());
        fi->cache_readdir = 1; // the kernel may keep listings
        fi->keep_cache = 1;
        if (fuse_reply_open(req, fi) == 0)
            static_cast<void>(in.release()); // freed in op_releasedir
        return 0;
    });
}

// readdir and readdirplus: "." and "..", then the SquashFS listing from
// listing_offset_of(off), as many entries as fit in size bytes.
void list_dir(fuse_req_t req, std::size_t size, off_t off, fuse_file_info* fi, bool plus) {
    guarded(req, [&] {
        Server& s = server_of(req);
        sqfs_inode dir = handle_inode(fi);
        Lease l(s.pool);
        char* buf = l.scratch(size);
        std::size_t used = 0;
        // Adds one entry; false when it doesn't fit (it is then not sent).
        auto add = [&](const char* name, const fuse_entry_param& e, off_t next) {
            char* at = buf + used;
            const std::size_t room = size - used;
            const std::size_t need = plus ? fuse_add_direntry_plus(req, at, room, name, &e, next)
                                          : fuse_add_direntry(req, at, room, name, &e.attr, next);
            if (need > room)
                return false;
            used += need;
            return true;
        };
        // "." and "..": the kernel ignores their attributes (node 0 here
        // also tells readdirplus not to link them).
        fuse_entry_param dot{};
        dot.attr.st_mode = S_IFDIR;
        if (off < after_dot) {
            dot.attr.st_ino = dir.base.inode_number;
            if (!add(".", dot, after_dot))
                return EINVAL; // buffer too small for even one entry
        }
        if (off < after_dotdot) {
            dot.attr.st_ino = dir.xtra.dir.parent_inode;
            if (!add("..", dot, after_dotdot)) {
                fuse_reply_buf(req, buf, used);
                return 0;
            }
        }
        sqfs_dir d;
        if (sqfs_dir_open(l.fs(), &dir, &d, listing_offset_of(off)) != SQFS_OK)
            return EIO;
        sqfs_name namebuf;
        sqfs_dir_entry entry;
        sqfs_dentry_init(&entry, namebuf);
        sqfs_err err = SQFS_OK;
        while (sqfs_dir_next(l.fs(), &d, &entry, &err)) {
            fuse_entry_param e{};
            const sqfs_inode_id id = sqfs_dentry_inode(&entry);
            if (plus) {
                sqfs_inode child;
                if (sqfs_inode_get(l.fs(), &child, id) != SQFS_OK)
                    return EIO;
                e = entry_of(s, id, child);
            } else {
                e.attr.st_ino = sqfs_dentry_inode_num(&entry);
                e.attr.st_mode = sqfs_dentry_mode(&entry);
            }
            const off_t next = readdir_offset_after(sqfs_dentry_next_offset(&entry));
            if (!add(sqfs_dentry_name(&entry), e, next))
                break;
        }
        if (err != SQFS_OK)
            return EIO;
        fuse_reply_buf(req, buf, used);
        return 0;
    });
}

void op_readdir(fuse_req_t req, fuse_ino_t, std::size_t size, off_t off, fuse_file_info* fi) {
    list_dir(req, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t, std::size_t size, off_t off, fuse_file_info* fi) {
    list_dir(req, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    free_handle(fi);
    fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
    const Server& s = server_of(req);
    struct statvfs st {};
    st.f_bsize = s.block_size;
    st.f_frsize = s.block_size;
    st.f_blocks = (s.bytes_used + s.block_size - 1) / s.block_size;
    st.f_files = s.inodes;
    st.f_namemax = SQUASHFS_NAME_LEN;
    fuse_reply_statfs(req, &st);
}

// Calls fn(name, x) for each xattr of the inode until fn returns true.
// Returns 0 or an errno. (sqfs_xattr_lookup is not used: in 0.1.105 it can
// match a name with the wrong prefix.)
template <typename Fn>
int each_xattr(sqfs* fs, sqfs_inode& in, Fn&& fn) {
    sqfs_xattr x;
    if (sqfs_xattr_open(fs, &in, &x) != SQFS_OK)
        return EIO;
    while (x.remain > 0) {
        if (sqfs_xattr_read(&x) != SQFS_OK)
            return EIO;
        std::string name(sqfs_xattr_name_size(&x), '\0');
        if (sqfs_xattr_name(&x, name.data(), true) != SQFS_OK)
            return EIO;
        if (fn(name, x))
            break;
    }
    return 0;
}

// Reply with data as getxattr/listxattr expect: its size if the caller asked
// for the size (0), else the data if it fits, else ERANGE.
int reply_sized(fuse_req_t req, std::size_t size, const std::string& data) {
    if (size == 0) {
        fuse_reply_xattr(req, data.size());
        return 0;
    }
    if (data.size() > size)
        return ERANGE;
    fuse_reply_buf(req, data.data(), data.size());
    return 0;
}

void op_getxattr(fuse_req_t req, fuse_ino_t node, const char* name, std::size_t size) {
    with_inode(req, node, [&](Server&, sqfs* fs, sqfs_inode& in) {
        bool found = false;
        int value_err = 0;
        std::string value;
        const int err = each_xattr(fs, in, [&](const std::string& n, sqfs_xattr& x) {
            if (n != name)
                return false;
            found = true;
            std::size_t vsize = 0;
            if (sqfs_xattr_value_size(&x, &vsize) != SQFS_OK) {
                value_err = EIO;
                return true;
            }
            if (vsize > max_xattr_value) {
                value_err = E2BIG;
                return true;
            }
            value.resize(vsize);
            if (sqfs_xattr_value(&x, value.data()) != SQFS_OK)
                value_err = EIO;
            return true;
        });
        if (err != 0 || value_err != 0)
            return err != 0 ? err : value_err;
        if (!found)
            return ENODATA;
        return reply_sized(req, size, value);
    });
}

void op_listxattr(fuse_req_t req, fuse_ino_t node, std::size_t size) {
    with_inode(req, node, [&](Server&, sqfs* fs, sqfs_inode& in) {
        std::string list;
        const int err = each_xattr(fs, in, [&](const std::string& n, sqfs_xattr&) {
            list.append(n).push_back('\0');
            return false;
        });
        if (err != 0)
            return err;
        return reply_sized(req, size, list);
    });
}

fuse_lowlevel_ops make_ops() {
    fuse_lowlevel_ops ops{};
    ops.init = op_init;
    ops.lookup = op_lookup;
    ops.forget = op_forget;
    ops.forget_multi = op_forget_multi;
    ops.getattr = op_getattr;
    ops.readlink = op_readlink;
    ops.open = op_open;
    ops.read = op_read;
    ops.release = op_release;
    ops.opendir = op_opendir;
    ops.readdir = op_readdir;
    ops.readdirplus = op_readdirplus;
    ops.releasedir = op_releasedir;
    ops.statfs = op_statfs;
    ops.getxattr = op_getxattr;
    ops.listxattr = op_listxattr;
    return ops;
}

// libfuse's own messages go through our log (stderr, with our prefix).
void fuse_log_to_ch(fuse_log_level level, const char* fmt, va_list ap) {
    char msg[1024];
    if (std::vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        return;
    std::string text(msg);
    while (!text.empty() && text.back() == '\n')
        text.pop_back();
    if (level <= FUSE_LOG_ERR)
        log::error("FUSE: ", text);
    else
        log::debug("FUSE: ", text);
}

unsigned affinity_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0)
        return static_cast<unsigned>(CPU_COUNT(&set));
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<unsigned>(n) : 1;
}

} // namespace

// ---- SquashFile ------------------------------------------------------------

struct SquashFile::Impl {
    fs::path path;
    Fd fd;
    std::unique_ptr<Instance> in; // the checked instance; serve() takes it
};

SquashFile::SquashFile(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
SquashFile::SquashFile(SquashFile&&) noexcept = default;
SquashFile& SquashFile::operator=(SquashFile&&) noexcept = default;
SquashFile::~SquashFile() = default;

const fs::path& SquashFile::path() const { return impl_->path; }
int SquashFile::fd() const { return impl_->fd.get(); }

namespace {

template <typename... Parts>
[[noreturn]] void bad_image(const fs::path& path, const Parts&... why) {
    throw Error(cat("can't mount ", path.string(), ": ", why...), Exit::squash);
}

const char* compression_name(int c) {
    const std::string_view n = squash_compressor_name(c);
    return n.empty() ? nullptr : n.data();
}

// Read the root directory's inode, its listing and every entry's inode: cheap
// (one or two metadata blocks), and it catches damage in the tables that
// sqfs_init does not read.
bool root_readable(sqfs* fs) {
    sqfs_inode root;
    if (sqfs_inode_get(fs, &root, sqfs_inode_root(fs)) != SQFS_OK || !S_ISDIR(root.base.mode))
        return false;
    sqfs_dir d;
    if (sqfs_dir_open(fs, &root, &d, 0) != SQFS_OK)
        return false;
    sqfs_name namebuf;
    sqfs_dir_entry entry;
    sqfs_dentry_init(&entry, namebuf);
    sqfs_err err = SQFS_OK;
    while (sqfs_dir_next(fs, &d, &entry, &err)) {
        sqfs_inode child;
        if (sqfs_inode_get(fs, &child, sqfs_dentry_inode(&entry)) != SQFS_OK)
            return false;
    }
    return err == SQFS_OK;
}

} // namespace

SquashFile SquashFile::open(const fs::path& path) {
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->fd = try_open_at(AT_FDCWD, path, O_RDONLY);
    if (!impl->fd)
        throw_errno_code(Exit::squash, "can't mount ", path.string());
    struct stat st {};
    if (::fstat(impl->fd.get(), &st) != 0)
        throw_errno_code(Exit::squash, "can't mount ", path.string());
    if (!has_squash_magic(impl->fd.get()))
        bad_image(path, "not a SquashFS file (bad magic)");
    // Our own look at the superblock first, so that each failure gets its
    // reason (sqfs_init only says "error").
    squashfs_super_block sb{};
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (::pread(impl->fd.get(), &sb, sizeof sb, 0) != static_cast<ssize_t>(sizeof sb))
        bad_image(path, "truncated (", size, " bytes, smaller than a SquashFS superblock)");
    if (sb.s_major != SQUASHFS_MAJOR || sb.s_minor > SQUASHFS_MINOR)
        bad_image(path, "unsupported SquashFS version ", sb.s_major, ".", sb.s_minor,
                  " (need 4.0)");
    if (sb.bytes_used > size)
        bad_image(path, "truncated (", size, " bytes; the superblock says ", sb.bytes_used, ")");
    impl->in = std::make_unique<Instance>();
    sqfs* fs = &impl->in->fs;
    switch (sqfs_init(fs, impl->fd.get(), 0)) {
    case SQFS_OK:
        impl->in->live = true;
        widen_md_cache(fs);
        break;
    case SQFS_BADCOMP: {
        const char* name = compression_name(sb.compression);
        bad_image(path, "compressed with ", name ? name : cat("unknown method ", sb.compression),
                  ", which this build can't read");
    }
    case SQFS_BADFORMAT:
        bad_image(path, "not a SquashFS file (bad superblock)");
    default:
        bad_image(path, "corrupted (can't read its tables)");
    }
    if (sb.block_size == 0 || !root_readable(fs))
        bad_image(path, "corrupted (can't read the root directory)");
    return SquashFile(std::move(impl));
}

bool SquashFile::has(std::string_view path) {
    sqfs* fs = &impl_->in->fs;
    sqfs_inode root;
    if (sqfs_inode_get(fs, &root, sqfs_inode_root(fs)) != SQFS_OK)
        return false;
    // The directories from the root down to the current one: ".." pops, so
    // nothing climbs above the image's root.
    std::vector<sqfs_inode> stack;
    std::deque<std::string> todo;
    auto push_components = [&](std::string_view p) {
        auto parts = split(p, '/');
        for (auto& c : std::views::reverse(parts))
            if (!c.empty() && c != ".")
                todo.push_front(std::move(c));
    };
    push_components(path);
    int links = 0;
    sqfs_name namebuf;
    sqfs_dir_entry entry;
    sqfs_dentry_init(&entry, namebuf);
    while (!todo.empty()) {
        const std::string c = std::move(todo.front());
        todo.pop_front();
        if (c == "..") {
            if (!stack.empty())
                stack.pop_back();
            continue;
        }
        sqfs_inode dir = stack.empty() ? root : stack.back();
        bool found = false;
        if (!S_ISDIR(dir.base.mode) || c.size() > SQUASHFS_NAME_LEN ||
            sqfs_dir_lookup(fs, &dir, c.c_str(), c.size(), &entry, &found) != SQFS_OK || !found)
            return false;
        sqfs_inode child;
        if (sqfs_inode_get(fs, &child, sqfs_dentry_inode(&entry)) != SQFS_OK)
            return false;
        if (S_ISLNK(child.base.mode)) {
            const std::string target = read_link(fs, child);
            if (++links > max_symlinks_followed || target.empty())
                return false;
            if (target[0] == '/')
                stack.clear();
            push_components(target);
            continue;
        }
        stack.push_back(child);
    }
    return true;
}

// ---- serving ----------------------------------------------------------------

unsigned default_server_threads(unsigned cpus) { return std::clamp(2 * cpus, 4U, 64U); }

unsigned default_prefetch_threads(unsigned cpus) { return std::clamp(cpus, 1U, 9U) - 1; }

namespace {

using Session = std::unique_ptr<fuse_session, FreeWith<fuse_session_destroy>>;
using LoopConfig = std::unique_ptr<fuse_loop_config, FreeWith<fuse_loop_cfg_destroy>>;

} // namespace

void serve(SquashFile& file, const std::function<Fd()>& receive_device, const ServeOptions& opts,
           const std::function<void(const std::string&)>& ready) {
    SquashFile::Impl& impl = *file.impl_;
    const unsigned cpus = affinity_cpus();
    const unsigned threads = opts.max_threads != 0 ? opts.max_threads : default_server_threads(cpus);
    const squashfs_super_block sb = impl.in->fs.sb;
    const unsigned prefetchers = default_prefetch_threads(cpus);
    Server s(impl.fd.get(), std::move(impl.in), sb, opts, threads, prefetchers);
    fuse_set_log_func(fuse_log_to_ch);

    std::vector<std::string> argv_s = {"ch-run"};
    if (opts.debug)
        argv_s.emplace_back("-odebug");
    std::vector<char*> argv;
    argv.reserve(argv_s.size());
    for (auto& a : argv_s)
        argv.push_back(a.data());
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    const fuse_lowlevel_ops ops = make_ops();
    const Session se(fuse_session_new(&args, &ops, sizeof ops, &s));
    if (!se) {
        ready("can't create a FUSE session");
        return;
    }
    const LoopConfig cfg(fuse_loop_cfg_create());
    if (!cfg) {
        ready("can't configure the FUSE loop");
        return;
    }
    fuse_loop_cfg_set_max_threads(cfg.get(), threads);
    // No clone_fd: it reopens /dev/fuse, which this user may not be allowed to.
    fuse_loop_cfg_set_clone_fd(cfg.get(), 0);
    // All of the above happened while ch-run made its namespaces and the
    // mount; now the mounted descriptor.
    Fd fuse_dev = receive_device();
    if (!fuse_dev)
        return; // ch-run failed (or exited) before mounting
    // "/dev/fd/N": libfuse's convention for a descriptor that someone else
    // opened and mounted; the session owns it from here on.
    if (fuse_session_mount(se.get(), cat("/dev/fd/", fuse_dev.get()).c_str()) != 0) {
        ready("can't use the /dev/fuse descriptor");
        return;
    }
    fuse_dev.release();
    log::verbose("serving ", impl.path.string(), " with up to ", threads, " threads, ",
                 prefetchers, " inflating ahead");
    ready("");
    // Returns when the kernel ends the connection (read gives ENODEV): the
    // mount went away with its namespace.
    const int rc = fuse_session_loop_mt(se.get(), cfg.get());
    log::verbose("FUSE server for ", impl.path.string(), " done (", rc, ")");
}

} // namespace ch::image

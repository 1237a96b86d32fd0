// squash_serve.cc: see squash_serve.hh. The FUSE server's low-level
// operations, on the checked image of squash_image.hh.
//
// Thread safety: the Image is shared (its metadata cache has its own lock),
// so is the data block cache (squash_cache.hh); what a thread needs for
// itself (a decompressor, a reply buffer) it borrows from a pool for the
// request. Node ids are computed, not looked up (node_of_inode). A few more
// threads (Prefetcher, at idle priority) inflate the blocks that reads will
// probably want next.
//
// Start-up cost: `ch-run IMG.sqfs -- /bin/true` asks this server for about 30
// lookups and reads (45 requests in all, 59 before reads left the rest of their
// blocks in the page cache: PageFiller), and 15 blocks of 128 KiB must be
// inflated whatever we do (the pages that the loader and libc touch lie in
// them; a smaller read-ahead made more reads, not fewer blocks). What is left
// to save is everything around it, so on a machine where every CPU is busy the
// whole start costs less CPU time (measured with `make bench`'s squashrun and
// perf, in CPU time, the machine being shared): no open or release requests
// (no-open, op_open), no thread started for a reader that asks one thing at a
// time (Loop), no guesses inflated on small machines and only at idle priority
// on larger ones (default_prefetch_threads), block buffers that fault in 2 MiB
// at a time (BufferArena). And while ch-run builds the container, the loader's
// and libc's blocks are inflated on the CPU that waits (Warmer,
// squash_warm.hh): 0.49 of Charliecloud's time became 0.41 on a quiet 2-CPU
// node.
//
// FUSE callbacks are C: nothing may throw through them. guarded() turns an
// exception into an error reply (a damaged image: EIO), and every operation
// replies exactly once, as its last statement.
#include "image/squash_serve.hh"

#define FUSE_USE_VERSION 312
#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include <malloc.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "image/squash_cache.hh"
#include "image/squash_image.hh"
#include "image/squash_warm.hh"
#include "util/cpus.hh"
#include "util/error.hh"
#include "util/log.hh"

namespace ch::image {

using squash::BlockKey;
using squash::Inflater;
using squash::Inode;

namespace {

// The image never changes under a mount, so the kernel may cache names,
// attributes, symlinks, pages and listings for as long as it likes.
constexpr double cache_timeout_s = 365.0 * 24 * 3600;

// What a thread needs for one request: a decompressor and a buffer for
// readdir replies, kept from one request to the next.
struct Worker {
    Inflater inf;
    std::vector<char> buf;

    explicit Worker(const squash::Image& img)
        : inf(img) {}
};

// Workers not in use. A request takes one (creating it if none is free) and
// gives it back, so there are never more than threads that served at once.
class Pool {
public:
    Pool(const squash::Image& img, std::size_t capacity)
        : img_(img) {
        free_.reserve(capacity);
    }

    std::unique_ptr<Worker> take() {
        {
            const std::lock_guard<std::mutex> lock(mu_);
            if (!free_.empty()) {
                auto w = std::move(free_.back());
                free_.pop_back();
                return w;
            }
        }
        return std::make_unique<Worker>(img_);
    }

    void give(std::unique_ptr<Worker> w) noexcept {
        const std::lock_guard<std::mutex> lock(mu_);
        if (free_.size() < free_.capacity()) // never allocates; a surplus one is freed
            free_.push_back(std::move(w));
    }

private:
    const squash::Image& img_;
    std::mutex mu_;
    std::vector<std::unique_ptr<Worker>> free_;
};

class Lease {
public:
    explicit Lease(Pool& pool)
        : pool_(pool)
        , w_(pool.take()) {}

    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    ~Lease() { pool_.give(std::move(w_)); }

    Inflater& inf() { return w_->inf; }

    // n bytes of scratch space for a reply (it only grows: no zeroing).
    char* scratch(std::size_t n) {
        if (w_->buf.size() < n)
            w_->buf.resize(n);
        return w_->buf.data();
    }

private:
    Pool& pool_;
    std::unique_ptr<Worker> w_;
};

squash::Loader block_loader(const squash::Image& img, Inflater& inf) {
    return [&img, &inf](const BlockKey& key, squash::Block& out) {
        out.size = img.read_block(key, out.data.get(), out.cap, inf);
    };
}

// A block of zeros for holes, never written: mapped, not allocated, so its
// pages are the kernel's shared zero page and setting it up costs neither
// memory nor page faults (a vector of them cost every start a 128 KiB
// memset, 32 faults, in a process whose every start counts).
class Zeros {
public:
    explicit Zeros(std::size_t n)
        : n_(n) {
        void* m = ::mmap(nullptr, n_, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            throw std::bad_alloc();
        p_ = static_cast<char*>(m);
    }

    Zeros(const Zeros&) = delete;
    Zeros& operator=(const Zeros&) = delete;

    ~Zeros() { ::munmap(p_, n_); }

    char* data() const { return p_; }

private:
    char* p_ = nullptr;
    std::size_t n_;
};

// What reads need of a file: its inode and where its blocks are, decoded
// and checked once.
struct OpenFile {
    Inode in;
    squash::FileLayout layout;
};

// The files read lately, by node, for reads without an open (no-open: the
// kernel sends no OPEN, so no handle). Least recently used go first once
// their layouts pass max_bytes (a layout is 4 bytes a block, so the largest
// file the image may declare fits alone).
class FileCache {
public:
    explicit FileCache(std::size_t max_bytes)
        : max_bytes_(max_bytes) {}

    // The file at node, decoded by make() if it is not cached (outside the
    // lock, so a slow decode holds up no other read).
    template <typename Make>
    std::shared_ptr<const OpenFile> get(fuse_ino_t node, Make&& make) {
        {
            const std::lock_guard<std::mutex> lock(mu_);
            if (const auto it = files_.find(node); it != files_.end()) {
                lru_.splice(lru_.begin(), lru_, it->second.age);
                return it->second.file;
            }
        }
        std::shared_ptr<const OpenFile> f = make();
        const std::size_t charge =
            sizeof(OpenFile) + f->layout.hdrs.size() * 4 + f->layout.starts.size() * 8;
        const std::lock_guard<std::mutex> lock(mu_);
        if (files_.count(node) != 0 || charge > max_bytes_)
            return f; // another thread was quicker, or too large to keep
        lru_.push_front(node);
        files_.emplace(node, Slot{f, lru_.begin(), charge});
        bytes_ += charge;
        while (bytes_ > max_bytes_) {
            const auto old = files_.find(lru_.back());
            bytes_ -= old->second.charge;
            files_.erase(old);
            lru_.pop_back();
        }
        return f;
    }

private:
    struct Slot {
        std::shared_ptr<const OpenFile> file;
        std::list<fuse_ino_t>::iterator age;
        std::size_t charge = 0;
    };

    const std::size_t max_bytes_;
    std::size_t bytes_ = 0;
    std::mutex mu_;
    std::map<fuse_ino_t, Slot> files_;
    std::list<fuse_ino_t> lru_; // most recently used first
};

// Stores what reads leave of the blocks they inflated (fill_ranges) in the
// kernel's page cache: `ch-run IMG.sqfs -- /bin/true` then asks about 45
// things instead of 59, for 4% less CPU time, with both CPUs of a small
// node busy too. On a thread of its own, started at the first piece: a
// store waits for pages that another read has locked until that read is
// answered, which a serving thread must stay free to do. At most
// server_fill_queue pieces wait (block keys: a block dropped from the cache
// meanwhile is skipped); more are dropped, as they only save requests. The
// store of a node the kernel has forgotten fails (ENOENT), harmlessly.
class PageFiller {
public:
    struct Piece {
        fuse_ino_t node = 0;
        std::uint64_t off = 0; // in the file
        BlockKey key;          // found in the cache when stored, or skipped
        std::size_t at = 0;    // in the block
        std::size_t len = 0;
    };

    explicit PageFiller(std::shared_ptr<squash::BlockCache> cache)
        : cache_(std::move(cache)) {}

    PageFiller(const PageFiller&) = delete;
    PageFiller& operator=(const PageFiller&) = delete;

    ~PageFiller() { stop(); }

    void attach(fuse_session* se) {
        const std::lock_guard<std::mutex> lock(mu_);
        se_ = se;
    }

    // Never throws: a piece that can't be queued is dropped.
    void add(Piece p) noexcept {
        try {
            const std::lock_guard<std::mutex> lock(mu_);
            if (se_ == nullptr || stopping_ || p.len == 0 || queue_.size() >= server_fill_queue)
                return;
            if (!started_) {
                thread_ = std::thread([this] { run(); });
                started_ = true;
            }
            queue_.push_back(std::move(p));
            cv_.notify_one();
        } catch (...) {
        }
    }

    // Drops what is queued and waits for the thread.
    void stop() {
        {
            const std::lock_guard<std::mutex> lock(mu_);
            stopping_ = true;
            queue_.clear();
        }
        cv_.notify_all();
        if (thread_.joinable())
            thread_.join();
    }

    std::uint64_t stored() const { return stored_; }

private:
    void run() noexcept {
        for (;;) {
            Piece p;
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (stopping_)
                    return;
                p = std::move(queue_.front());
                queue_.pop_front();
            }
            // Not held while queued: memory stays what the cache bounds.
            const auto block = cache_->peek(p.key);
            if (!block || p.at > block->size || p.len > block->size - p.at)
                continue;
            fuse_bufvec bv{};
            bv.count = 1;
            bv.buf[0].size = p.len;
            bv.buf[0].fd = -1;
            bv.buf[0].mem = block->data.get() + p.at;
            if (fuse_lowlevel_notify_store(se_, p.node, static_cast<off_t>(p.off), &bv,
                                           fuse_buf_copy_flags{}) == 0)
                stored_ += p.len;
        }
    }

    const std::shared_ptr<squash::BlockCache> cache_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Piece> queue_;
    std::thread thread_;
    fuse_session* se_ = nullptr;
    bool started_ = false;
    bool stopping_ = false;
    std::atomic<std::uint64_t> stored_{0};
};

struct Server {
    Server(std::shared_ptr<const squash::Image> image, const ServeOptions& opts, unsigned threads,
           unsigned prefetchers)
        : img(std::move(image))
        , pool(*img, threads + 1)
        , blocks(std::make_shared<squash::BlockCache>(server_cache_bytes, img->block_size()))
        , files(server_file_cache_bytes)
        , prefetcher(
              *blocks, prefetchers, server_cache_bytes / 2 / img->block_size(),
              [this] {
                  // Each prefetching thread owns its decompressor.
                  auto inf = std::make_shared<Inflater>(*img);
                  const squash::Image* i = img.get();
                  return squash::Loader([i, inf](const BlockKey& key, squash::Block& out) {
                      out.size = i->read_block(key, out.data.get(), out.cap, *inf);
                  });
              },
              true)
        , zeros(img->block_size())
        , uid(opts.uid)
        , gid(opts.gid)
        , prefetch_threads(prefetchers)
        , filler(blocks) {}

    std::shared_ptr<const squash::Image> img;
    Pool pool;
    // Shared with the Warmer's thread, which may outlive the server.
    std::shared_ptr<squash::BlockCache> blocks;
    FileCache files;
    squash::Prefetcher prefetcher; // after pool and blocks: its threads use them until it goes
    Zeros zeros;                   // a block of them, for holes
    uid_t uid;
    gid_t gid;
    unsigned prefetch_threads;
    bool no_open = false; // the kernel opens files without asking (op_init)
    PageFiller filler;
    std::atomic<std::uint64_t> requests{0}; // answered, for -v
};

Server& server_of(fuse_req_t req) {
    return *static_cast<Server*>(fuse_req_userdata(req));
}

// Run an operation: fn replies and returns 0, or returns the errno to reply.
template <typename Fn>
void guarded(fuse_req_t req, Fn&& fn) noexcept {
    server_of(req).requests++;
    int err = EIO;
    try {
        err = fn();
        if (err == 0)
            return;
    } catch (const std::bad_alloc&) {
        err = ENOMEM;
    } catch (const std::exception& e) {
        log::debug("FUSE request failed: ", e.what());
        err = EIO;
    } catch (...) {
        err = EIO;
    }
    fuse_reply_err(req, err);
}

Inode get_inode(const Server& s, Inflater& inf, fuse_ino_t node) {
    return s.img->inode(inode_of_node(node, s.img->root_ref()), inf);
}

// Most requests name one node: runs fn(server, lease, inode) with a worker
// held for the whole call, replying with fn's error if it has one.
template <typename Fn>
void with_inode(fuse_req_t req, fuse_ino_t node, Fn&& fn) noexcept {
    guarded(req, [&] {
        Server& s = server_of(req);
        Lease l(s.pool);
        Inode in = get_inode(s, l.inf(), node);
        return fn(s, l, in);
    });
}

// Owners are the container user: with a one-line id map the image's own ids
// (often 0) would show up as nobody, and the files are the user's anyway.
struct stat stat_of(const Server& s, const Inode& in) {
    struct stat st {};

    st.st_ino = in.number;
    st.st_mode = in.mode;
    st.st_nlink = static_cast<nlink_t>(std::max<std::uint32_t>(in.nlink, 1));
    st.st_uid = s.uid;
    st.st_gid = s.gid;
    st.st_atime = st.st_mtime = st.st_ctime = in.mtime;
    st.st_blksize = s.img->block_size();
    if (in.is_file()) {
        st.st_size = static_cast<off_t>(in.size);
        st.st_blocks = static_cast<blkcnt_t>((in.size + 511) / 512);
    } else if (in.is_symlink()) {
        st.st_size = static_cast<off_t>(in.target.size());
    } else if (in.is_dir()) {
        st.st_size = in.dir_size;
    } else if (S_ISBLK(in.mode) || S_ISCHR(in.mode)) {
        // Linux's encoding (new_encode_dev): minor's low byte, major, the
        // rest of minor.
        st.st_rdev =
            makedev((in.devno >> 8) & 0xFFF, (in.devno & 0xFF) | ((in.devno >> 12) & 0xFFF00));
    }
    return st;
}

fuse_entry_param entry_of(const Server& s, const Inode& in) {
    fuse_entry_param e{};
    e.ino = node_of_inode(in.ref, s.img->root_ref());
    e.attr = stat_of(s, in);
    e.attr_timeout = cache_timeout_s;
    e.entry_timeout = cache_timeout_s;
    return e;
}

template <typename T>
T& handle(const fuse_file_info* fi) {
    return *reinterpret_cast<T*>(fi->fh); // NOLINT(performance-no-int-to-ptr)
}

// ---- operations --------------------------------------------------------

void op_init(void* userdata, fuse_conn_info* conn) {
    // No-open: the kernel opens and releases files without a request (two
    // round trips a file fewer; pages are then kept from one open to the
    // next, as keep_cache did), and reads come without a handle (FileCache).
    static_cast<Server*>(userdata)->no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
    // Nothing ever changes under us: no invalidation on mtime changes, and
    // symlink targets may be cached.
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_AUTO_INVAL_DATA);
    // Reads of at most a block: a page fault reads around it (the kernel's
    // read-ahead window, 128 KiB), and every block that window touches must
    // be inflated whole. In an image of smaller blocks (Charliecloud's
    // ch-convert writes 64 KiB ones) a fault then costs one of them, not
    // the two or more around it: `ch-run IMG.sqfs -- /bin/true` on a Debian
    // minbase in 32 KiB blocks inflated 36 of them, not 48 (about 7% less
    // CPU time). Sequential reads still come several at a time (async reads).
    conn->max_readahead =
        std::min<unsigned>(conn->max_readahead, static_cast<Server*>(userdata)->img->block_size());
    for (const unsigned cap : {unsigned(FUSE_CAP_CACHE_SYMLINKS),
                               unsigned(FUSE_CAP_PARALLEL_DIROPS), unsigned(FUSE_CAP_ASYNC_READ)})
        if (conn->capable & cap)
            conn->want |= cap;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    const std::size_t len = std::strlen(name);
    if (len > squash::max_name) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    with_inode(req, parent, [&](Server& s, Lease& l, Inode& dir) {
        if (!dir.is_dir())
            return ENOTDIR;
        squash::DirEntry entry;
        if (!s.img->lookup(dir, name, l.inf(), entry)) {
            // A negative entry with a timeout: the kernel remembers that the
            // name is missing (PATH searches, Python's imports).
            fuse_entry_param e{};
            e.entry_timeout = cache_timeout_s;
            fuse_reply_entry(req, &e);
            return 0;
        }
        // A directory that contains itself or the root: a cycle (the kernel
        // would refuse it too, less clearly).
        if (entry.ref == dir.ref || entry.ref == s.img->root_ref())
            return EIO;
        const Inode child = s.img->inode(entry.ref, l.inf());
        const fuse_entry_param e = entry_of(s, child);
        fuse_reply_entry(req, &e);
        return 0;
    });
}

// Node ids are computed, so there is no lookup count to keep.
void op_forget(fuse_req_t req, fuse_ino_t, std::uint64_t) {
    fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, std::size_t, fuse_forget_data*) {
    fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t node, fuse_file_info*) {
    with_inode(req, node, [&](Server& s, Lease&, Inode& in) {
        const struct stat st = stat_of(s, in);
        fuse_reply_attr(req, &st, cache_timeout_s);
        return 0;
    });
}

void op_readlink(fuse_req_t req, fuse_ino_t node) {
    with_inode(req, node, [&](Server&, Lease&, Inode& in) {
        if (!in.is_symlink())
            return EINVAL;
        fuse_reply_readlink(req, in.target.c_str());
        return 0;
    });
}

// Where the kernel supports no-open, ENOSYS is the answer to the first open
// and there are no more (libfuse's convention): the mount is read-only, so
// the kernel itself refuses opens for writing (EROFS), and directories and
// other files never reach here.
void op_open(fuse_req_t req, fuse_ino_t node, fuse_file_info* fi) {
    guarded(req, [&] {
        Server& s = server_of(req);
        if (s.no_open)
            return ENOSYS;
        if ((fi->flags & O_ACCMODE) != O_RDONLY)
            return EROFS;
        auto f = std::make_unique<OpenFile>();
        {
            Lease l(s.pool);
            f->in = get_inode(s, l.inf(), node);
            if (f->in.is_dir())
                return EISDIR;
            if (!f->in.is_file())
                return EINVAL;
            f->layout = s.img->layout(f->in, l.inf());
        }
        f->in.blocks = {}; // the layout has them
        // Whoever opens a file reads its start next (exec and the dynamic
        // loader read the ELF header at once): inflate it while the kernel
        // handles this reply.
        if (f->layout.count() > 0 && f->layout.block(0).hdr != 0)
            s.prefetcher.want({f->layout.block(0)}, s.img->block_size());
        else if (f->layout.count() == 0 && f->layout.has_tail)
            s.prefetcher.want({f->layout.tail}, s.img->block_size());
        fi->fh = reinterpret_cast<std::uint64_t>(f.get());
        fi->keep_cache = 1; // pages stay valid from one open to the next
        fi->noflush = 1;
        if (fuse_reply_open(req, fi) == 0)
            static_cast<void>(f.release()); // freed in op_release
        return 0;
    });
}

// Where the bytes [off, off + size) of file f are (squash::file_spans),
// and up to ahead_max blocks of the file that follow, for the prefetcher.
void plan_read(const OpenFile& f, std::uint64_t bs, std::uint64_t off, std::size_t size,
               std::vector<squash::FileSpan>& spans, std::vector<BlockKey>& ahead,
               std::size_t ahead_max) {
    const squash::FileLayout& l = f.layout;
    for (std::uint64_t i = squash::file_spans(l, f.in.size, bs, off, size, spans);
         ahead.size() < ahead_max && i < l.count(); i++)
        if (const BlockKey k = l.block(i); k.hdr != 0)
            ahead.push_back(k);
}

// How many blocks after a read the prefetcher is asked for: two per
// prefetching thread, at most about 1 MiB. Guesses cost CPU: on 2 CPUs
// (one prefetcher), guessing 1 MiB ahead cost `ch-run IMG.sqfs -- true` 7%
// more CPU time than guessing 2 blocks ahead, and the loader's page faults
// into shared libraries are too scattered for far guesses to pay.
std::size_t prefetch_blocks(std::uint32_t block_size, unsigned prefetchers) {
    return std::min<std::size_t>(std::max<std::size_t>(1, (std::size_t{1} << 20) / block_size),
                                 std::size_t{2} * prefetchers);
}

} // namespace

std::vector<FillRange> fill_ranges(std::uint64_t off, std::size_t len, std::uint64_t file_size,
                                   std::uint32_t block_size) {
    std::vector<FillRange> out;
    if (len == 0 || block_size == 0 || off >= file_size || len > file_size - off)
        return out;
    const std::uint64_t end = off + len;
    const std::uint64_t first_start = off / block_size * block_size;
    if (off > first_start)
        out.push_back({true, first_start, static_cast<std::size_t>(off - first_start)});
    const std::uint64_t last_end = std::min(file_size, ((end - 1) / block_size + 1) * block_size);
    if (end < last_end)
        out.push_back({false, end, static_cast<std::size_t>(last_end - end)});
    return out;
}

namespace {

// Replies straight from the cached blocks (the kernel copies from them into
// the page cache: no copy of ours in between).
void op_read(fuse_req_t req, fuse_ino_t node, std::size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, [&] {
        Server& s = server_of(req);
        std::shared_ptr<const OpenFile> cached; // no-open: no handle
        bool first_read = false;
        if (fi->fh == 0)
            cached = s.files.get(node, [&] {
                first_read = true;
                auto f = std::make_shared<OpenFile>();
                Lease l(s.pool);
                f->in = get_inode(s, l.inf(), node);
                if (!f->in.is_file())
                    throw squash::SquashError("a read of a file that is not regular");
                f->layout = s.img->layout(f->in, l.inf());
                f->in.blocks = {}; // the layout has them
                return f;
            });
        const OpenFile& f = fi->fh == 0 ? *cached : handle<OpenFile>(fi);
        const auto file_size = static_cast<off_t>(f.in.size);
        if (off < 0)
            return EINVAL;
        if (off >= file_size || size == 0) {
            fuse_reply_buf(req, nullptr, 0);
            return 0;
        }
        const auto want =
            static_cast<std::size_t>(std::min<off_t>(static_cast<off_t>(size), file_size - off));
        const std::uint32_t bs = s.img->block_size();
        std::vector<squash::FileSpan> spans;
        std::vector<BlockKey> later;
        plan_read(f, bs, static_cast<std::uint64_t>(off), want, spans, later,
                  prefetch_blocks(bs, s.prefetch_threads));
        // The prefetcher (if any) takes this read's other blocks while this
        // thread inflates the first, then the ones after the read.
        if (s.prefetch_threads != 0) {
            std::vector<BlockKey> guess;
            for (std::size_t i = 1; i < spans.size(); i++)
                if (!spans[i].hole)
                    guess.push_back(spans[i].key);
            for (const BlockKey& k : later)
                if (!s.blocks->has(k))
                    guess.push_back(k);
            s.prefetcher.want(guess, bs);
        }

        Lease l(s.pool);
        const squash::Loader load = block_loader(*s.img, l.inf());
        std::vector<std::shared_ptr<const squash::Block>> held;
        std::vector<iovec> iov;
        held.reserve(spans.size());
        iov.reserve(spans.size());
        for (const squash::FileSpan& sp : spans) {
            if (sp.hole) {
                iov.push_back({s.zeros.data(), sp.len});
                continue;
            }
            auto b = s.blocks->get(sp.key, bs, load);
            // A block that inflated to less than the file needs from it.
            if (sp.at > b->size || sp.len > b->size - sp.at)
                return EIO;
            iov.push_back({b->data.get() + sp.at, sp.len});
            held.push_back(std::move(b));
        }
        fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
        // Answered: nothing after this may throw into guarded(), which
        // would answer again.
        try {
            for (const FillRange& r : fill_ranges(static_cast<std::uint64_t>(off), want,
                                                  static_cast<std::uint64_t>(file_size), bs)) {
                const squash::FileSpan& sp = r.first ? spans.front() : spans.back();
                if (sp.hole)
                    continue;
                // Where the range lies in the block: before the read's bytes
                // there, or after them.
                if (r.first && r.len > sp.at)
                    continue;
                const std::size_t at = r.first ? sp.at - r.len : sp.at + sp.len;
                s.filler.add({node, r.off, sp.key, at, r.len});
            }
            // A file's first read (as far as the server remembers): its
            // other blocks inflated already (ahead of the first program,
            // squash_warm.hh, which takes at most warm_file_max_bytes of a
            // file) go to the page cache whole.
            const std::uint64_t first = static_cast<std::uint64_t>(off) / bs;
            const std::uint64_t last = first + spans.size() - 1;
            const std::uint64_t guessed =
                first_read
                    ? std::min<std::uint64_t>(f.layout.count(), squash::warm_file_max_bytes / bs)
                    : 0;
            for (std::uint64_t j = 0; j < guessed; j++) {
                const BlockKey k = f.layout.block(j);
                if (k.hdr != 0 && (j < first || j > last) && s.blocks->has(k))
                    s.filler.add({node, j * bs, k, 0,
                                  static_cast<std::size_t>(std::min<std::uint64_t>(
                                      bs, static_cast<std::uint64_t>(file_size) - j * bs))});
            }
        } catch (...) { // only requests saved are lost
        }
        return 0;
    });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete &handle<OpenFile>(fi);
    fuse_reply_err(req, 0);
}

void op_opendir(fuse_req_t req, fuse_ino_t node, fuse_file_info* fi) {
    guarded(req, [&] {
        Server& s = server_of(req);
        auto in = std::make_unique<Inode>();
        {
            Lease l(s.pool);
            *in = get_inode(s, l.inf(), node);
        }
        if (!in->is_dir())
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
        const Inode& dir = handle<Inode>(fi);
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
            dot.attr.st_ino = dir.number;
            if (!add(".", dot, after_dot))
                return EINVAL; // buffer too small for even one entry
        }
        if (off < after_dotdot) {
            dot.attr.st_ino = dir.parent;
            if (!add("..", dot, after_dotdot)) {
                fuse_reply_buf(req, buf, used);
                return 0;
            }
        }
        const auto from = static_cast<std::uint32_t>(listing_offset_of(off));
        s.img->list(dir, from, l.inf(), [&](const squash::DirEntry& entry) {
            fuse_entry_param e{};
            if (plus && entry.ref != dir.ref && entry.ref != s.img->root_ref()) {
                e = entry_of(s, s.img->inode(entry.ref, l.inf()));
            } else {
                e.attr.st_ino = entry.number;
                e.attr.st_mode = entry.type;
            }
            return add(entry.name.c_str(), e, readdir_offset_after(entry.next));
        });
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
    delete &handle<Inode>(fi);
    fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
    const Server& s = server_of(req);
    const std::uint32_t bs = s.img->block_size();

    struct statvfs st {};

    st.f_bsize = bs;
    st.f_frsize = bs;
    st.f_blocks = (s.img->bytes_used() + bs - 1) / bs;
    st.f_files = s.img->inode_count();
    st.f_namemax = squash::max_name;
    fuse_reply_statfs(req, &st);
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
    with_inode(req, node, [&](Server& s, Lease& l, Inode& in) {
        for (const auto& x : s.img->xattrs(in, l.inf()))
            if (x.name == name)
                return reply_sized(req, size, x.value);
        return ENODATA;
    });
}

void op_listxattr(fuse_req_t req, fuse_ino_t node, std::size_t size) {
    with_inode(req, node, [&](Server& s, Lease& l, Inode& in) {
        std::string list;
        for (const auto& x : s.img->xattrs(in, l.inf()))
            list.append(x.name).push_back('\0');
        return reply_sized(req, size, list);
    });
}

// An image without xattrs gets no xattr operations: libfuse answers ENOSYS
// once, and the kernel stops asking (every exec asks for
// security.capability otherwise: a round trip per exec).
fuse_lowlevel_ops make_ops(bool xattrs) {
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
    if (xattrs) {
        ops.getxattr = op_getxattr;
        ops.listxattr = op_listxattr;
    }
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

} // namespace

// ---- SquashFile ------------------------------------------------------------

struct SquashFile::Impl {
    fs::path path;
    std::shared_ptr<squash::Image> img;
};

SquashFile::SquashFile(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

SquashFile::SquashFile(SquashFile&&) noexcept = default;
SquashFile& SquashFile::operator=(SquashFile&&) noexcept = default;
SquashFile::~SquashFile() = default;

const fs::path& SquashFile::path() const {
    return impl_->path;
}

int SquashFile::fd() const {
    return impl_->img->fd();
}

SquashFile SquashFile::open(const fs::path& path) {
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    Fd fd = try_open_at(AT_FDCWD, path, O_RDONLY);
    if (!fd)
        throw_errno_code(Exit::squash, "can't mount ", path.string());
    try {
        impl->img = squash::Image::open(std::move(fd), server_meta_cache_bytes);
    } catch (Error& e) {
        e.add_context(cat("can't mount ", path.string()));
        e.set_exit_code(Exit::squash);
        throw;
    }
    return SquashFile(std::move(impl));
}

bool SquashFile::has(std::string_view path) {
    const squash::Image& img = *impl_->img;
    try {
        Inflater inf(img);
        Inode in;
        return img.resolve(path, inf, in);
    } catch (const Error&) {
        return false; // damaged metadata counts as missing
    }
}

// ---- serving ----------------------------------------------------------------

unsigned default_server_threads(unsigned cpus) {
    return std::clamp(2 * cpus, 4U, 64U);
}

unsigned default_prefetch_threads(unsigned cpus) {
    return std::clamp(cpus, 2U, 10U) - 2;
}

namespace {

using Session = std::unique_ptr<fuse_session, FreeWith<fuse_session_destroy>>;

// The request loop: like libfuse's multi-threaded loop, except that a second
// thread starts only when a request is waiting while every thread is busy,
// not as soon as the first one is. A container that starts one program asks
// one thing at a time (a lookup, a page fault), and extra threads there cost
// more than they save: starting them, their stacks and malloc arenas, and
// handing requests from thread to thread (with libfuse's loop,
// `ch-run IMG.sqfs -- /bin/true` took 7-10% more CPU time than with one
// thread). Many readers at once (MPI ranks that share the mount) still get
// up to max_threads.
class Loop {
public:
    Loop(fuse_session* se, unsigned max_threads)
        : se_(se)
        , fd_(fuse_session_fd(se))
        , max_(std::max(max_threads, 1U)) {}

    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;

    // Serves until the kernel ends the connection; returns libfuse's error
    // (0 when the mount went away).
    int run() {
        const int rc = serve();
        for (;;) {
            std::thread t;
            {
                const std::lock_guard<std::mutex> lock(mu_);
                stopping_ = true;
                if (helpers_.empty())
                    break;
                t = std::move(helpers_.back());
                helpers_.pop_back();
            }
            t.join();
        }
        return rc;
    }

    unsigned threads() {
        const std::lock_guard<std::mutex> lock(mu_);
        return started_;
    }

private:
    int serve() noexcept {
        fuse_buf buf{}; // its memory comes from libfuse's first read
        int rc = 0;
        while (!fuse_session_exited(se_)) {
            idle_++;
            rc = fuse_session_receive_buf(se_, &buf);
            idle_--;
            if (rc == -EINTR)
                continue;
            if (rc <= 0) // 0: the kernel ended the connection (ENODEV)
                break;
            if (idle_ == 0)
                maybe_add_thread();
            fuse_session_process_buf(se_, &buf);
        }
        std::free(buf.mem);
        return rc < 0 ? rc : 0;
    }

    // Another thread, if a request is already waiting for one.
    void maybe_add_thread() noexcept {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0 || (p.revents & POLLIN) == 0)
            return;
        const std::lock_guard<std::mutex> lock(mu_);
        if (stopping_ || started_ >= max_)
            return;
        try {
            helpers_.emplace_back([this] { static_cast<void>(serve()); });
            started_++;
        } catch (const std::system_error&) { // no more threads: serve with those we have
        }
    }

    fuse_session* const se_;
    const int fd_;
    const unsigned max_;
    std::atomic<unsigned> idle_{0}; // threads waiting for a request
    std::mutex mu_;
    std::vector<std::thread> helpers_;
    unsigned started_ = 1; // the caller's thread included
    bool stopping_ = false;
};

// Inflates the blocks that the container's first program will read
// (squash_warm.hh) on a thread of its own, at idle priority, from before
// ch-run mounts until it is done. On a quiet node that CPU would sit idle
// while ch-run builds the container and the loader faults in libc block by
// block; on a busy one the thread gets (almost) no CPU. A read that wants a
// block this thread is still inflating takes it over (BlockCache), so a
// starved guess never makes a read wait, and neither does the server's end:
// the thread shares the image and the block cache, not the server, and the
// server does not wait for it (a SCHED_IDLE thread can wait long for a CPU
// on a busy node, and can't be given back its priority without privilege).
// At normal priority the guesses competed with ch-run and the server for
// the two CPUs of a small node and made starts slower, not faster.
class Warmer {
public:
    Warmer(const Server& s, const ServeOptions& opts, unsigned cpus) {
        // On one CPU there is nothing to overlap with.
        if (opts.warm_command.empty() || cpus < 2)
            return;
        std::thread(run, state_, s.img, s.blocks, opts.warm_command, opts.warm_path).detach();
    }

    Warmer(const Warmer&) = delete;
    Warmer& operator=(const Warmer&) = delete;

    ~Warmer() { state_->stop = true; }

    // Blocks inflated ahead so far.
    std::size_t blocks() const { return state_->done; }

private:
    struct State {
        std::atomic<bool> stop{false};
        std::atomic<std::size_t> done{0};
    };

    static void run(std::shared_ptr<State> st, std::shared_ptr<const squash::Image> img,
                    std::shared_ptr<squash::BlockCache> cache, std::string command,
                    std::string path) noexcept {
        const sched_param param{};
        static_cast<void>(::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &param));
        try {
            // On a busy node the guesses still got CPU time (1.2 ms of it for
            // `ch-run IMG.sqfs -- /bin/true` with both CPUs of a small node
            // busy) and saved none.
            if (!node_has_idle_cpu())
                return;
            Inflater inf(*img);
            const std::uint32_t bs = img->block_size();
            const squash::Loader load = block_loader(*img, inf);
            // Blocks read to find the files (the program's headers, the
            // loader cache) are guesses too: inflated here, then taken.
            const squash::WarmBlocks get = [&](const BlockKey& k) {
                cache->prefetch(k, bs, load);
                return cache->get(k, bs, load);
            };
            const auto files = squash::warm_files(*img, inf, get, command, path);
            std::size_t n = 0;
            for (const BlockKey& k : squash::warm_blocks(files, bs)) {
                if (st->stop || (++n % 4 == 0 && !node_has_idle_cpu()))
                    return;
                if (!cache->has(k)) {
                    cache->prefetch(k, bs, load);
                    st->done++;
                }
            }
        } catch (...) { // a guess failed: the reads will do it
        }
    }

    std::shared_ptr<State> state_ = std::make_shared<State>();
};

} // namespace

void serve(SquashFile& file, const std::function<Fd()>& receive_device, const ServeOptions& opts,
           const std::function<void(const std::string&)>& ready) {
    SquashFile::Impl& impl = *file.impl_;
    const unsigned cpus = usable_cpus();
    const unsigned threads =
        opts.max_threads != 0 ? opts.max_threads : default_server_threads(cpus);
    const unsigned prefetchers = default_prefetch_threads(cpus);
    // Blocks (up to 1 MiB each) come and go all the time: from the heap,
    // not from mmap (glibc's default for 128 KiB and more), whose fresh
    // pages each cost a fault and zeroing in the kernel.
    ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
    Server s(impl.img, opts, threads, prefetchers);
    // While ch-run builds the container.
    const Warmer warmer(s, opts, cpus);
    fuse_set_log_func(fuse_log_to_ch);

    std::vector<std::string> argv_s = {"ch-run"};
    if (opts.debug)
        argv_s.emplace_back("-odebug");
    std::vector<char*> argv;
    argv.reserve(argv_s.size());
    for (auto& a : argv_s)
        argv.push_back(a.data());
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    const fuse_lowlevel_ops ops = make_ops(impl.img->has_xattrs());
    const Session se(fuse_session_new(&args, &ops, sizeof ops, &s));
    if (!se) {
        ready("can't create a FUSE session");
        return;
    }
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
    log::verbose("serving ", impl.path.string(), " with up to ", threads, " threads, ", prefetchers,
                 " inflating ahead at idle priority");
    ready("");
    // Returns when the kernel ends the connection (read gives ENODEV): the
    // mount went away with its namespace. All threads read the one
    // descriptor (no clone_fd: it reopens /dev/fuse, which this user may not
    // be allowed to).
    s.filler.attach(se.get());
    Loop loop(se.get(), threads);
    const int rc = loop.run();
    s.filler.stop();

    // The peak for make bench (squashrun), and for anyone who wonders.
    struct rusage ru {};

    ::getrusage(RUSAGE_SELF, &ru);
    log::verbose("FUSE server for ", impl.path.string(), " done (", rc, "); ", s.requests.load(),
                 " requests, ", loop.threads(), " threads, inflated ", s.blocks->loads(),
                 " data blocks (", warmer.blocks(), " ahead of the first program), stored ",
                 s.filler.stored() / 1024, " KiB in the page cache", "; peak resident memory ",
                 ru.ru_maxrss, " KiB");
}

} // namespace ch::image

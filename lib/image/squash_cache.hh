// squash_cache.hh: decompressed SquashFS blocks shared by threads, bounded in
// bytes, and the threads that inflate blocks ahead of the reads. Knows
// nothing of the format: a block is a key (where it sits in the image) and
// whatever its loader writes; the FUSE server keeps one cache for data and
// fragment blocks and the image one for metadata blocks (squash_image.hh).
#pragma once

#include <atomic>
#include <compare>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ch::image::squash {

// Where a block sits in the image: its position and its size header (which
// also says whether it is compressed), so a hostile image that names one
// position with two sizes gets two blocks, each checked on its own.
struct BlockKey {
    std::uint64_t pos = 0;
    std::uint32_t hdr = 0;
    auto operator<=>(const BlockKey&) const = default;
};

class BufferArena;

// Frees a block's buffer: back to its arena's free slots, or delete[] for
// one from the heap (no arena).
struct BufferFree {
    std::shared_ptr<BufferArena> arena;
    void operator()(char* p) const noexcept;
};

// A decompressed block: size bytes of data, in a buffer of cap bytes. Kept
// alive by whoever still replies from it, even after the cache dropped it.
struct Block {
    std::unique_ptr<char[], BufferFree> data;
    std::size_t size = 0;
    std::size_t cap = 0;
    std::uint64_t next = 0; // metadata blocks: where the next one starts
};

// Fills out.data (out.cap bytes) with the block at key and sets out.size
// (and out.next if it means something); throws if the block can't be read
// (corrupt, truncated, I/O).
using Loader = std::function<void(const BlockKey& key, Block& out)>;

// Buffers of one size (slot_bytes, a multiple of the page size) carved from
// one region reserved up front, for a cache whose blocks all have that size.
// Why not the heap: starting a program from an image inflates a dozen or two
// blocks into memory never touched before, and the kernel then takes a page
// fault, a page allocation and a zeroing for every 4 KiB of them: 13% of the
// FUSE server's CPU time for `ch-run IMG.sqfs -- /bin/true`. The region asks
// for transparent huge pages (MADV_HUGEPAGE: 2 MiB per fault), which cut the
// server's CPU time there by about 12%; where the kernel has none to give,
// it is ordinary memory and costs what the heap did. Only slots handed out
// are ever touched, a freed slot is reused first (its pages are warm), and
// the region is never larger than slots * slot_bytes (the cache's bound,
// plus a few in flight), so memory stays bounded as before.
class BufferArena {
public:
    // Reserves the region; throws std::bad_alloc if it can't.
    BufferArena(std::size_t slot_bytes, std::size_t slots);
    BufferArena(const BufferArena&) = delete;
    BufferArena& operator=(const BufferArena&) = delete;
    ~BufferArena();

    // A free slot, or nullptr when every slot is in use.
    char* take() noexcept;
    // Gives back a slot from take().
    void give(char* p) noexcept;
    bool owns(const char* p) const noexcept;

    std::size_t slot_bytes() const { return slot_; }

private:
    char* map_ = nullptr; // what mmap returned, map_bytes_ long
    std::size_t map_bytes_ = 0;
    char* base_ = nullptr; // the first slot, aligned to a huge page
    const std::size_t slot_;
    const std::size_t slots_;
    std::size_t used_ = 0; // slots [0, used_) have been handed out at least once
    std::mutex mu_;
    std::vector<char*> free_;
};

// Least recently used blocks go first once the buffers of the cached blocks
// (loading ones included) pass max_bytes. A thread that wants a block another
// thread is loading waits for it, so each block is inflated once however
// many requests want it at the same time (the kernel's read-ahead windows
// and the page faults of exec rarely line up with SquashFS blocks).
//
// A thread that wants a block the prefetcher is still guessing (a
// speculative load) does not wait for it but loads it itself: prefetching
// threads run at idle priority (Prefetcher), so on a busy machine the guess
// may not finish soon, and a reader must never wait on the slowest thread of
// the process (priority inversion). The guess then only costs its own CPU
// time and, until it ends, one more buffer than the bound.
class BlockCache {
public:
    // With arena, the buffers of blocks of arena_slot_bytes come from a
    // BufferArena of that slot size, holding the bound and a few more
    // (blocks still in use after they were dropped); other blocks, and any
    // beyond that, from the heap.
    explicit BlockCache(std::size_t max_bytes, std::size_t arena_slot_bytes = 0);

    BlockCache(const BlockCache&) = delete;
    BlockCache& operator=(const BlockCache&) = delete;

    // The block at key, loaded with load (cap bytes of buffer) unless cached
    // or being loaded by another thread. Throws what load threw (to every
    // thread that waited for it); a failed block is not cached.
    std::shared_ptr<const Block> get(const BlockKey& key, std::size_t cap, const Loader& load);

    // Load the block if nobody has yet; never waits for another thread and
    // never throws (a failed guess is just not cached). For the prefetcher.
    void prefetch(const BlockKey& key, std::size_t cap, const Loader& load) noexcept;

    // Whether the block is cached or being loaded.
    bool has(const BlockKey& key);

    // The block if it is cached and loaded; never loads, never waits.
    std::shared_ptr<const Block> peek(const BlockKey& key);

    // Bytes of the buffers the cache holds now (never more than max_bytes
    // once no block is loading, except a single block larger than it).
    std::size_t bytes();

    std::size_t max_bytes() const { return max_bytes_; }

    // How many blocks were loaded so far (for -v and make bench).
    std::size_t loads() const { return loads_; }

private:
    struct Entry {
        enum class State { loading, ready, failed };
        State state = State::loading;
        bool speculative = false; // loaded by prefetch(): readers don't wait for it
        std::shared_ptr<Block> block;
        std::exception_ptr error;
    };

    struct Slot {
        std::shared_ptr<Entry> entry;
        std::list<BlockKey>::iterator age; // its place in lru_
        std::size_t charge = 0;            // bytes counted for it
    };

    std::shared_ptr<Entry> find(const BlockKey& key);
    std::shared_ptr<Entry> add(const BlockKey& key, std::size_t cap);
    std::unique_ptr<char[], BufferFree> buffer(std::size_t cap);
    void load(const BlockKey& key, const std::shared_ptr<Entry>& e, std::size_t cap,
              const Loader& loader, std::unique_lock<std::mutex>& lock);
    void drop(const BlockKey& key, const std::shared_ptr<Entry>& e);
    void evict();

    const std::size_t max_bytes_;
    std::shared_ptr<BufferArena> arena_; // null: every buffer from the heap
    std::size_t bytes_ = 0;
    std::atomic<std::size_t> loads_{0};
    std::mutex mu_;
    std::condition_variable done_; // a block finished loading
    std::map<BlockKey, Slot> slots_;
    std::list<BlockKey> lru_; // most recently used first
};

// Threads that load blocks that reads will probably want next, on CPUs that
// would otherwise sit idle while the reading process waits: the kernel asks
// for one window at a time, and inflating is most of what a read costs.
// Speculative only: the newest reads' guesses go first, and old ones fall
// off the end of a queue of at most max_queued keys.
class Prefetcher {
public:
    // Each thread calls make_loader once for a loader of its own (with its
    // own decompressor). With idle, the threads run at SCHED_IDLE: they get a
    // CPU only when nothing else wants it, so guesses never take time from
    // the reads (or from other jobs) on a busy node.
    Prefetcher(BlockCache& cache, unsigned threads, std::size_t max_queued,
               const std::function<Loader()>& make_loader, bool idle = false);
    Prefetcher(const Prefetcher&) = delete;
    Prefetcher& operator=(const Prefetcher&) = delete;
    ~Prefetcher();

    // Queue keys (cap bytes each), nearest first, ahead of older guesses.
    void want(const std::vector<BlockKey>& keys, std::size_t cap);

private:
    void work(Loader load, bool idle) noexcept;

    BlockCache& cache_;
    const std::size_t max_queued_;
    std::mutex mu_;
    std::condition_variable wake_;
    std::deque<std::pair<BlockKey, std::size_t>> queue_;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};

} // namespace ch::image::squash

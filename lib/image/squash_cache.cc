// squash_cache.cc: see squash_cache.hh.
#include "image/squash_cache.hh"

#include <new>
#include <utility>

#include <pthread.h>
#include <sanitizer/asan_interface.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

namespace ch::image::squash {

// ---- BufferArena --------------------------------------------------------

namespace {

constexpr std::size_t huge_page = std::size_t{2} << 20; // x86-64 and arm64 (4 KiB pages)

} // namespace

BufferArena::BufferArena(std::size_t slot_bytes, std::size_t slots)
    : slot_(slot_bytes)
    , slots_(slots) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    if (slot_ == 0 || slot_ % page != 0 || slots_ == 0 || slots_ > (SIZE_MAX - huge_page) / slot_)
        throw std::bad_alloc();
    // One huge page more, to start the slots on a huge page boundary.
    map_bytes_ = slot_ * slots_ + huge_page;
    void* m = ::mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        throw std::bad_alloc();
    map_ = static_cast<char*>(m);
    const auto at = reinterpret_cast<std::uintptr_t>(map_);
    base_ = map_ + ((huge_page - at % huge_page) % huge_page);
    // Advice only: without THP (or with it off) this fails or does nothing,
    // and the region is ordinary memory.
    static_cast<void>(::madvise(base_, slot_ * slots_, MADV_HUGEPAGE));
    free_.reserve(slots_);
    // Under ASan, a slot is addressable only while it is handed out, so a
    // read past a block or after its last holder let go is caught as on
    // the heap (no-ops otherwise).
    ASAN_POISON_MEMORY_REGION(base_, slot_ * slots_);
}

BufferArena::~BufferArena() {
    ::munmap(map_, map_bytes_);
}

char* BufferArena::take() noexcept {
    char* p = nullptr;
    {
        const std::lock_guard<std::mutex> lock(mu_);
        if (!free_.empty()) {
            p = free_.back();
            free_.pop_back();
        } else if (used_ < slots_) {
            p = base_ + slot_ * used_++;
        } else {
            return nullptr;
        }
    }
    ASAN_UNPOISON_MEMORY_REGION(p, slot_);
    return p;
}

void BufferArena::give(char* p) noexcept {
    ASAN_POISON_MEMORY_REGION(p, slot_);
    const std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(p); // never allocates: reserved for every slot
}

bool BufferArena::owns(const char* p) const noexcept {
    return p >= base_ && p < base_ + slot_ * slots_;
}

void BufferFree::operator()(char* p) const noexcept {
    if (arena && arena->owns(p))
        arena->give(p);
    else
        delete[] p;
}

// ---- BlockCache -------------------------------------------------------------

BlockCache::BlockCache(std::size_t max_bytes, std::size_t arena_slot_bytes)
    : max_bytes_(max_bytes) {
    // The bound, and room for blocks still in use after the cache dropped
    // them (a reply being written, a guess overtaken by a reader).
    constexpr std::size_t in_flight = 16;
    if (arena_slot_bytes != 0)
        arena_ = std::make_shared<BufferArena>(arena_slot_bytes,
                                               max_bytes / arena_slot_bytes + in_flight);
}

std::unique_ptr<char[], BufferFree> BlockCache::buffer(std::size_t cap) {
    if (arena_ && cap == arena_->slot_bytes())
        if (char* p = arena_->take())
            return {p, BufferFree{arena_}};
    return {new char[cap], BufferFree{}};
}

std::shared_ptr<BlockCache::Entry> BlockCache::find(const BlockKey& key) {
    const auto it = slots_.find(key);
    if (it == slots_.end())
        return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second.age);
    return it->second.entry;
}

std::shared_ptr<BlockCache::Entry> BlockCache::add(const BlockKey& key, std::size_t cap) {
    auto e = std::make_shared<Entry>();
    lru_.push_front(key);
    slots_.emplace(key, Slot{e, lru_.begin(), cap});
    bytes_ += cap;
    evict();
    return e;
}

// Oldest ready blocks first; a loading block stays (a thread waits for it),
// and so does the newest, so one block larger than the bound still works.
void BlockCache::evict() {
    auto it = lru_.end();
    while (bytes_ > max_bytes_ && it != lru_.begin()) {
        --it;
        if (it == lru_.begin())
            break;
        const auto s = slots_.find(*it);
        if (s->second.entry->state == Entry::State::loading)
            continue;
        bytes_ -= s->second.charge;
        slots_.erase(s);
        it = lru_.erase(it);
    }
}

void BlockCache::drop(const BlockKey& key, const std::shared_ptr<Entry>& e) {
    const auto it = slots_.find(key);
    if (it == slots_.end() || it->second.entry != e)
        return;
    bytes_ -= it->second.charge;
    lru_.erase(it->second.age);
    slots_.erase(it);
}

// Runs loader outside the lock (held on entry and on return).
void BlockCache::load(const BlockKey& key, const std::shared_ptr<Entry>& e, std::size_t cap,
                      const Loader& loader, std::unique_lock<std::mutex>& lock) {
    lock.unlock();
    loads_++;
    std::shared_ptr<Block> b;
    std::exception_ptr error;
    try {
        b = std::make_shared<Block>();
        b->data = buffer(cap);
        b->cap = cap;
        loader(key, *b);
        if (b->size > cap)
            b->size = cap; // a loader's bug must not become a read past the buffer
    } catch (...) {
        error = std::current_exception();
    }
    lock.lock();
    if (error) {
        e->state = Entry::State::failed;
        e->error = error;
        drop(key, e); // tried again next time
    } else {
        e->state = Entry::State::ready;
        e->block = std::move(b);
    }
    done_.notify_all();
    evict();
}

std::shared_ptr<const Block> BlockCache::get(const BlockKey& key, std::size_t cap,
                                             const Loader& loader) {
    std::unique_lock<std::mutex> lock(mu_);
    std::shared_ptr<Entry> e = find(key);
    if (e == nullptr) {
        e = add(key, cap);
        load(key, e, cap, loader, lock);
    } else if (e->state == Entry::State::loading && e->speculative) {
        // Take the slot over: later readers wait for this load; the guess
        // ends on its own and its entry, no longer in the cache, goes with
        // it (its charge stays with the slot).
        e = std::make_shared<Entry>();
        slots_.find(key)->second.entry = e;
        load(key, e, cap, loader, lock);
    } else {
        done_.wait(lock, [&] { return e->state != Entry::State::loading; });
    }
    if (e->state == Entry::State::failed)
        std::rethrow_exception(e->error);
    return e->block;
}

void BlockCache::prefetch(const BlockKey& key, std::size_t cap, const Loader& loader) noexcept {
    try {
        std::unique_lock<std::mutex> lock(mu_);
        if (find(key) != nullptr)
            return;
        const std::shared_ptr<Entry> e = add(key, cap);
        e->speculative = true;
        load(key, e, cap, loader, lock);
    } catch (...) { // out of memory: only a guess is lost
    }
}

bool BlockCache::has(const BlockKey& key) {
    const std::lock_guard<std::mutex> lock(mu_);
    return slots_.count(key) != 0;
}

std::shared_ptr<const Block> BlockCache::peek(const BlockKey& key) {
    const std::lock_guard<std::mutex> lock(mu_);
    const auto it = slots_.find(key);
    if (it == slots_.end() || it->second.entry->state != Entry::State::ready)
        return nullptr;
    return it->second.entry->block;
}

std::size_t BlockCache::bytes() {
    const std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
}

// ---- Prefetcher -------------------------------------------------------------

Prefetcher::Prefetcher(BlockCache& cache, unsigned threads, std::size_t max_queued,
                       const std::function<Loader()>& make_loader, bool idle)
    : cache_(cache)
    , max_queued_(max_queued) {
    threads_.reserve(threads);
    for (unsigned i = 0; i < threads; i++)
        threads_.emplace_back([this, load = make_loader(), idle] { work(load, idle); });
}

Prefetcher::~Prefetcher() {
    {
        const std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_)
        t.join();
}

void Prefetcher::want(const std::vector<BlockKey>& keys, std::size_t cap) {
    if (threads_.empty() || keys.empty())
        return;
    {
        const std::lock_guard<std::mutex> lock(mu_);
        for (auto it = keys.rbegin(); it != keys.rend(); ++it)
            queue_.emplace_front(*it, cap);
        while (queue_.size() > max_queued_)
            queue_.pop_back();
    }
    wake_.notify_all();
}

void Prefetcher::work(Loader load, bool idle) noexcept {
    if (idle) {
        // Lowering one's own priority needs no privilege; if it fails, the
        // guesses just compete as before.
        const sched_param param{};
        static_cast<void>(::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &param));
    }
    for (;;) {
        std::pair<BlockKey, std::size_t> job;
        {
            std::unique_lock<std::mutex> lock(mu_);
            wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (stop_)
                return;
            job = queue_.front();
            queue_.pop_front();
        }
        cache_.prefetch(job.first, job.second, load);
    }
}

} // namespace ch::image::squash

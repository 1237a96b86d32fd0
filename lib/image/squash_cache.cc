// squash_cache.cc: see squash_cache.hh.
#include "image/squash_cache.hh"

#include <utility>

namespace ch::image::squash {

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
        b->data = std::make_unique_for_overwrite<char[]>(cap);
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
        load(key, e, cap, loader, lock);
    } catch (...) { // out of memory: only a guess is lost
    }
}

bool BlockCache::has(const BlockKey& key) {
    const std::lock_guard<std::mutex> lock(mu_);
    return slots_.count(key) != 0;
}

std::size_t BlockCache::bytes() {
    const std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
}

// ---- Prefetcher -------------------------------------------------------------

Prefetcher::Prefetcher(BlockCache& cache, unsigned threads, std::size_t max_queued,
                       const std::function<Loader()>& make_loader)
    : cache_(cache)
    , max_queued_(max_queued) {
    threads_.reserve(threads);
    for (unsigned i = 0; i < threads; i++)
        threads_.emplace_back([this, load = make_loader()] { work(load); });
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

void Prefetcher::work(Loader load) noexcept {
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

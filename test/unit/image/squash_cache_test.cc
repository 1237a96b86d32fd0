// squash_cache_test.cc: the block cache alone (no image): its bound in bytes,
// which blocks it drops, one load per block however many threads want it,
// and failures that are not cached.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "image/squash_cache.hh"

using namespace ch::image::squash;

namespace {

// A loader that fills a block with its position's low byte and counts calls.
struct Counting {
    std::atomic<int> calls{0};

    Loader loader() {
        return [this](const BlockKey& k, Block& out) {
            calls++;
            std::memset(out.data.get(), static_cast<int>(k.pos & 0xFF), out.cap);
            out.size = out.cap;
        };
    }
};

} // namespace

TEST_SUITE("image") {

    TEST_CASE("squash_cache: holds at most its bound in bytes, dropping the oldest") {
        BlockCache c(8192);
        Counting n;
        const Loader load = n.loader();
        for (std::uint64_t pos = 1; pos <= 5; pos++) {
            const auto b = c.get({pos, 1}, 4096, load);
            CHECK(b->size == 4096);
            CHECK(b->data[0] == static_cast<char>(pos));
            CHECK(c.bytes() <= c.max_bytes());
        }
        CHECK(n.calls == 5);
        CHECK(c.has({5, 1}));
        CHECK(c.has({4, 1}));
        CHECK_FALSE(c.has({1, 1})); // the oldest went first
        static_cast<void>(c.get({4, 1}, 4096, load));
        CHECK(n.calls == 5); // cached: not loaded again
        static_cast<void>(c.get({1, 1}, 4096, load));
        CHECK(n.calls == 6);        // dropped: loaded again
        CHECK_FALSE(c.has({5, 1})); // 4 was used more recently than 5
    }

    TEST_CASE("squash_cache: a block still in use outlives its eviction") {
        BlockCache c(4096);
        Counting n;
        const Loader load = n.loader();
        const auto held = c.get({7, 1}, 4096, load);
        static_cast<void>(c.get({8, 1}, 4096, load));
        CHECK_FALSE(c.has({7, 1}));
        CHECK(held->data[4095] == 7); // the reply's bytes stay valid
        CHECK(c.bytes() == 4096);
    }

    TEST_CASE("squash_cache: threads that want one block at once load it once") {
        BlockCache c(1 << 20);
        std::atomic<int> calls{0};
        const Loader slow = [&](const BlockKey&, Block& out) {
            calls++;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            std::memset(out.data.get(), 'x', out.cap);
            out.size = out.cap;
        };
        std::vector<std::thread> threads;
        std::atomic<int> good{0};
        for (int i = 0; i < 8; i++)
            threads.emplace_back([&] {
                const auto b = c.get({42, 1}, 1024, slow);
                if (b->size == 1024 && b->data[1023] == 'x')
                    good++;
            });
        for (auto& t : threads)
            t.join();
        CHECK(calls == 1);
        CHECK(good == 8);
    }

    TEST_CASE("squash_cache: peek gives a loaded block, never loads and never waits") {
        BlockCache c(1 << 20);
        Counting n;
        CHECK(c.peek({1, 1}) == nullptr);
        CHECK(n.calls == 0);
        const auto b = c.get({1, 1}, 1024, n.loader());
        CHECK(c.peek({1, 1}) == b);
        // A block being loaded by another thread: not yet.
        std::atomic<bool> go{false};
        std::thread t([&] {
            static_cast<void>(c.get({2, 1}, 1024, [&](const BlockKey&, Block& out) {
                while (!go)
                    std::this_thread::yield();
                out.size = out.cap;
            }));
        });
        while (!c.has({2, 1}))
            std::this_thread::yield();
        CHECK(c.peek({2, 1}) == nullptr);
        go = true;
        t.join();
        CHECK(c.peek({2, 1}) != nullptr);
        CHECK(n.calls == 1);
    }

    TEST_CASE("squash_cache: a failed load reaches every waiter and is not cached") {
        BlockCache c(1 << 20);
        int calls = 0;
        const Loader bad = [&](const BlockKey&, Block&) {
            calls++;
            throw std::runtime_error("corrupted block");
        };
        CHECK_THROWS_WITH(c.get({1, 1}, 1024, bad), "corrupted block");
        CHECK_FALSE(c.has({1, 1}));
        CHECK(c.bytes() == 0);
        CHECK_THROWS_WITH(c.get({1, 1}, 1024, bad), "corrupted block");
        CHECK(calls == 2);
        c.prefetch({1, 1}, 1024, bad); // a guess that fails is silent
        CHECK(calls == 3);
    }

    TEST_CASE("squash_cache: an arena hands out distinct slots, reuses freed ones, and says when "
              "it is empty") {
        BufferArena a(8192, 3);
        char* p1 = a.take();
        char* p2 = a.take();
        char* p3 = a.take();
        REQUIRE(p1 != nullptr);
        REQUIRE(p2 != nullptr);
        REQUIRE(p3 != nullptr);
        CHECK(a.take() == nullptr); // all three in use
        CHECK((p2 - p1 == 8192 || p1 - p2 == 8192));
        CHECK(p3 != p1);
        CHECK(p3 != p2);
        CHECK(reinterpret_cast<std::uintptr_t>(p1) % 4096 == 0);
        std::memset(p1, 'a', 8192); // writable, the whole slot
        std::memset(p3, 'c', 8192);
        CHECK(a.owns(p1));
        CHECK(a.owns(p3 + 8191));
        const char heap = 0;
        CHECK_FALSE(a.owns(&heap));
        a.give(p2);
        CHECK(a.take() == p2); // the freed slot comes back first
        a.give(p1);
        a.give(p2);
        a.give(p3);
    }

    TEST_CASE("squash_cache: blocks of the arena's size come from it and go back when dropped") {
        BlockCache c(2 * 4096, 4096); // two cached, plus a few in flight
        Counting n;
        const Loader load = n.loader();
        std::vector<std::shared_ptr<const Block>> held;
        for (std::uint64_t pos = 1; pos <= 40; pos++) {
            held.push_back(c.get({pos, 1}, 4096, load)); // more than the arena's slots
            CHECK(held.back()->data[4095] == static_cast<char>(pos));
        }
        const auto other = c.get({99, 1}, 1024, load); // another size: from the heap
        CHECK(other->data[1023] == 99);
        for (std::size_t i = 0; i < held.size(); i++) // none overwrote another
            CHECK(held[i]->data[0] == static_cast<char>(i + 1));
        held.clear(); // every slot given back (ASan would see a double give)
        CHECK(c.bytes() <= c.max_bytes() + 1024);
        for (std::uint64_t pos = 41; pos <= 60; pos++)
            CHECK(c.get({pos, 1}, 4096, load)->data[7] == static_cast<char>(pos));
        CHECK(n.calls == 61);
    }

    TEST_CASE("squash_cache: a reader loads a block itself rather than wait for a guess") {
        BlockCache c(1 << 20);
        std::atomic<bool> guess_started{false};
        std::atomic<bool> release_guess{false};
        const Loader stuck = [&](const BlockKey&, Block& out) {
            guess_started = true;
            while (!release_guess)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            std::memset(out.data.get(), 'g', out.cap);
            out.size = out.cap;
        };
        std::thread guesser([&] { c.prefetch({5, 1}, 1024, stuck); });
        while (!guess_started)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        Counting n;
        const auto b = c.get({5, 1}, 1024, n.loader()); // would hang if it waited
        CHECK(n.calls == 1);
        CHECK(b->data[0] == 5);
        release_guess = true;
        guesser.join();
        CHECK(c.get({5, 1}, 1024, n.loader())->data[0] == 5); // the reader's block stays
        CHECK(n.calls == 1);
    }

    TEST_CASE("squash_cache: the prefetcher loads what it is asked for") {
        BlockCache c(1 << 20);
        Counting n;
        {
            Prefetcher p(c, 2, 16, [&] { return n.loader(); });
            p.want({{1, 1}, {2, 1}, {3, 1}}, 1024);
            for (int i = 0; i < 200 && n.calls < 3; i++)
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        CHECK(n.calls == 3);
        CHECK(c.has({1, 1}));
        CHECK(c.has({3, 1}));
    }

} // TEST_SUITE

// blob_cache_test.cc: the cache's name is only ever a checked blob; partials
// resume, are locked, and go away on a mismatch.
#include <fstream>
#include <thread>

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "../image/fixtures.hh"
#include "storage/blob_cache.hh"
#include "util/error.hh"
#include "util/fd.hh"

using namespace ch;
using namespace ch::storage;

namespace {

std::span<const std::byte> bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::size_t count_files(const fs::path& dir) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir))
        ++n;
    return n;
}

} // namespace

TEST_CASE("sha256") {
    CHECK(sha256_digest("") ==
          "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_digest("abc") ==
          "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    Sha256 h;
    h.update(std::string_view("a"));
    h.update(bytes("bc"));
    CHECK(h.hex_digest() == sha256_digest("abc"));
}

TEST_CASE("blob cache: atomic finish") {
    test::TempDir tmp;
    BlobCache cache(tmp / "storage");

    struct stat st {};

    REQUIRE(::stat(cache.dir().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    const std::string data = "hello, layer";
    const auto digest = sha256_digest(data);
    CHECK_FALSE(cache.has(digest));
    {
        BlobCache::Partial p(cache, digest, data.size());
        CHECK_FALSE(p.done());
        CHECK(p.offset() == 0);
        p.write(bytes(data.substr(0, 5)));
        CHECK_FALSE(cache.has(digest)); // nothing under the name until checked
        p.write(bytes(data.substr(5)));
        CHECK_FALSE(cache.has(digest));
        p.finish();
        CHECK(p.done());
    }
    CHECK(cache.has(digest));
    CHECK(read_file(cache.path(digest)) == data);
    CHECK(count_files(cache.dir()) == 1); // no partial left
    // Already there: done at once.
    BlobCache::Partial again(cache, digest, data.size());
    CHECK(again.done());
}

TEST_CASE("blob cache: mismatch and oversize leave nothing") {
    test::TempDir tmp;
    BlobCache cache(tmp / "s");
    const std::string data = "the real bytes";
    const auto digest = sha256_digest(data);
    {
        BlobCache::Partial p(cache, digest, data.size());
        p.write(bytes("the fake bytes"));
        CHECK_THROWS_WITH_AS(p.finish(), doctest::Contains("digest mismatch"), Error);
    }
    CHECK_FALSE(cache.has(digest));
    CHECK(count_files(cache.dir()) == 0);
    {
        BlobCache::Partial p(cache, digest, data.size());
        p.write(bytes(data));
        CHECK_THROWS_WITH_AS(p.write(bytes("x")), doctest::Contains("longer than"), Error);
    }
    CHECK(count_files(cache.dir()) == 0);
    {
        BlobCache::Partial p(cache, digest, data.size());
        p.write(bytes("short"));
        CHECK_THROWS_AS(p.finish(), Error);
    }
    CHECK(count_files(cache.dir()) == 0);
    CHECK_THROWS_AS(cache.path("sha256:../../etc/passwd"), Error);
    CHECK_THROWS_AS(cache.has("md5:abc"), Error);
}

TEST_CASE("blob cache: a partial is resumed and re-hashed") {
    test::TempDir tmp;
    BlobCache cache(tmp / "s");
    const std::string data(100000, 'x');
    const auto digest = sha256_digest(data);
    {
        BlobCache::Partial p(cache, digest, data.size());
        p.write(bytes(std::string_view(data).substr(0, 40000)));
    } // killed, in effect: the partial stays
    CHECK(count_files(cache.dir()) == 1);
    {
        BlobCache::Partial p(cache, digest, data.size());
        CHECK(p.offset() == 40000);
        p.write(bytes(std::string_view(data).substr(40000)));
        p.finish();
    }
    CHECK(cache.has(digest));
    CHECK(count_files(cache.dir()) == 1);

    // A corrupt prefix: the digest catches it at the end.
    const std::string other(1000, 'y');
    const auto od = sha256_digest(other);
    {
        BlobCache::Partial p(cache, od, other.size());
        p.write(bytes("zzzz"));
    }
    {
        BlobCache::Partial p(cache, od, other.size());
        CHECK(p.offset() == 4);
        p.write(bytes(std::string_view(other).substr(4)));
        CHECK_THROWS_AS(p.finish(), Error);
    }
    // restart() throws away a prefix (a server without Range support).
    {
        BlobCache::Partial p(cache, od, other.size());
        p.write(bytes("zzzz"));
    }
    {
        BlobCache::Partial p(cache, od, other.size());
        p.restart();
        CHECK(p.offset() == 0);
        p.write(bytes(other));
        p.finish();
    }
    CHECK(cache.has(od));
}

TEST_CASE("blob cache: a partial in use by another process waits, then finds the blob done") {
    test::TempDir tmp;
    BlobCache cache(tmp / "s");
    const std::string data = "shared";
    const auto digest = sha256_digest(data);
    auto p = std::make_unique<BlobCache::Partial>(cache, digest, data.size());
    p->write(bytes(data));
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // flock is per open file description, and fork shares the parent's:
        // close it here, or the lock outlives the parent's release.
        close_fds_except({1, 2});
        int rc = 1;
        try {
            BlobCache::Partial q(cache, digest, data.size());
            rc = q.done() ? 0 : 2;
        } catch (...) {
            rc = 3;
        }
        ::_exit(rc);
    }
    ::usleep(200000);
    int status = 0;
    CHECK(::waitpid(pid, &status, WNOHANG) == 0); // still waiting for the lock
    p->finish();
    p.reset();
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("blob cache: sweep removes partials of finished blobs only") {
    test::TempDir tmp;
    BlobCache cache(tmp / "s");
    const std::string a = "aaa", b = "bbb";
    {
        BlobCache::Partial p(cache, sha256_digest(a), 3);
        p.write(bytes(a));
        p.finish();
    }
    {
        BlobCache::Partial p(cache, sha256_digest(b), 3);
        p.write(bytes("b"));
    }
    // A stale partial of a finished blob (a kill between rename and unlink
    // can't happen, but another tool could leave one).
    std::ofstream(cache.dir() / ("part-sha256-" + sha256_digest(a).substr(7))) << "a";
    CHECK(count_files(cache.dir()) == 3);
    cache.sweep();
    CHECK(count_files(cache.dir()) == 2);
    CHECK(cache.has(sha256_digest(a)));
}

TEST_CASE("blob cache: a symlink planted as a partial is refused") {
    test::TempDir tmp;
    BlobCache cache(tmp / "s");
    const std::string data = "data";
    const auto digest = sha256_digest(data);
    const auto part = cache.dir() / ("part-sha256-" + digest.substr(7));
    const auto target = tmp / "elsewhere";
    REQUIRE(::symlink(target.c_str(), part.c_str()) == 0);
    CHECK_THROWS_AS(BlobCache::Partial(cache, digest, data.size()), Error);
    CHECK_FALSE(fs::exists(target));
}

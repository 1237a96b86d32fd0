// layout_test.cc: storage names and the ownership checks (lib/storage/layout.cc).
#include <cstdlib>
#include <filesystem>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "storage/layout.hh"
#include "test/unit/image/fixtures.hh"
#include "util/error.hh"

using namespace ch;
namespace fs = std::filesystem;

namespace {

struct stat dir_stat(uid_t uid, mode_t mode) {
    struct stat st {};

    st.st_mode = S_IFDIR | mode;
    st.st_uid = uid;
    return st;
}

} // namespace

TEST_SUITE("storage/layout") {
    TEST_CASE("layout: names never contain . or .. components, nor start with / or .") {
        for (const char* ok :
             {"debian:12", "a/b", "example.com:5000/x/y:1.0", "local%bb+1.0", "a..b"})
            CHECK_MESSAGE(storage::is_image_name(ok), ok);
        for (const char* bad : {"", ".", "..", "./x", "../x", "/abs", "a/../b", "a/./b", "a//b",
                                "a/..", "a%..%b", "a%.", ".hidden", "a/"})
            CHECK_MESSAGE(!storage::is_image_name(bad), bad);
        CHECK(storage::image_dir("/s", "a/b:1") == "/s/img/a%b+1");
        CHECK_THROWS_WITH_AS(storage::image_dir("/s", ".."),
                             doctest::Contains("bad image name '..' (for a directory, give a path"),
                             Error);
        CHECK(storage::mount_dir("/s") == "/s/mnt");
        CHECK(storage::images_dir("/s") == "/s/img");
    }

    TEST_CASE("layout: a trailing slash can't hide a symlinked storage") {
        CHECK(storage::storage_dir(fs::path("/a/st/")).path == "/a/st");
        CHECK(storage::storage_dir(fs::path("/a/st//")).path == "/a/st");
        CHECK(storage::storage_dir(fs::path("/")).path == "/");
        CHECK(storage::storage_dir(fs::path("st/")).path == "st");
        CHECK(storage::storage_dir(fs::path("/a/st")).source == "-s");
    }

    TEST_CASE("layout: trust_problem names the owner, the writable bits, or the symlink") {
        CHECK_FALSE(storage::trust_problem(dir_stat(1000, 0700), 1000).has_value());
        CHECK_FALSE(storage::trust_problem(dir_stat(1000, 0755), 1000).has_value());
        CHECK(storage::trust_problem(dir_stat(1001, 0700), 1000)->starts_with("is owned by "));
        CHECK(
            storage::trust_problem(dir_stat(1001, 0700), 1000)->ends_with("not by you (uid 1000)"));
        CHECK(*storage::trust_problem(dir_stat(1000, 0770), 1000) == "is writable by its group");
        CHECK(*storage::trust_problem(dir_stat(1000, 0757), 1000) == "is writable by others");
        CHECK(*storage::trust_problem(dir_stat(1000, 01777), 1000) == "is writable by others");
        struct stat link = dir_stat(1000, 0777);
        link.st_mode = S_IFLNK | 0777;
        CHECK(*storage::trust_problem(link, 1000) == "is a symlink");
        struct stat file = dir_stat(1000, 0600);
        file.st_mode = S_IFREG | 0600;
        CHECK(*storage::trust_problem(file, 1000) == "is not a directory");
        // Root is held to the same rule.
        CHECK(storage::trust_problem(dir_stat(1000, 0700), 0)->starts_with("is owned by "));
    }

    TEST_CASE("layout: new storage is made 0700 whatever the umask, and checked") {
        const test::TempDir t;
        const mode_t old = ::umask(0);
        const fs::path img = storage::prepare_images_dir(t.path() / "st");
        const fs::path mnt = storage::prepare_mount_dir(t.path() / "st");
        ::umask(old);

        struct stat st {};

        REQUIRE(::stat((t.path() / "st").c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0700);
        REQUIRE(::stat(img.c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0700);
        REQUIRE(::stat(mnt.c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0700);
        // Existing but group-writable: refused, not fixed behind the user's back.
        REQUIRE(::chmod(mnt.c_str(), 0770) == 0);
        const std::string refused =
            cat("can't use storage directory ", mnt.string(), ": it is writable by its group");
        CHECK_THROWS_WITH_AS(storage::prepare_mount_dir(t.path() / "st"),
                             doctest::Contains(refused.c_str()), Error);
    }

    TEST_CASE("layout: find_image looks only at names, and only in trusted storage") {
        const test::TempDir t;
        const fs::path st = t.path() / "st";
        CHECK_FALSE(storage::find_image(st, "x").has_value()); // no storage: no image
        REQUIRE(fs::create_directories(st / "img" / "x"));
        REQUIRE(::chmod(st.c_str(), 0700) == 0);
        REQUIRE(::chmod((st / "img").c_str(), 0700) == 0);
        CHECK(storage::find_image(st, "x") == st / "img" / "x");
        CHECK_FALSE(storage::find_image(st, "y").has_value());
        // "." and ".." would name img/ and the storage itself.
        CHECK_FALSE(storage::find_image(st, ".").has_value());
        CHECK_FALSE(storage::find_image(st, "..").has_value());
        // An image that is a symlink is not a directory in storage.
        fs::create_directory_symlink("x", st / "img" / "l");
        CHECK_FALSE(storage::find_image(st, "l").has_value());
        REQUIRE(::chmod((st / "img").c_str(), 0777) == 0);
        CHECK_THROWS_WITH_AS(storage::find_image(st, "x"),
                             doctest::Contains("/img: it is writable by others"), Error);
        REQUIRE(::chmod((st / "img").c_str(), 0700) == 0);
        fs::create_directory_symlink("st", t.path() / "link");
        CHECK_THROWS_WITH_AS(storage::find_image(t.path() / "link", "x"),
                             doctest::Contains("link: it is a symlink"), Error);
    }

    TEST_CASE("layout: open_trusted_dir checks what it opened, and does not follow a symlink") {
        const test::TempDir t;
        REQUIRE(::mkdir((t.path() / "d").c_str(), 0700) == 0);
        fs::create_directory_symlink("d", t.path() / "l");
        const uid_t me = ::geteuid();
        const Fd dir = open_at(AT_FDCWD, t.path(), O_PATH | O_DIRECTORY);
        CHECK(storage::open_trusted_dir(dir.get(), "d", t.path() / "d", me));
        CHECK_THROWS_WITH_AS(storage::open_trusted_dir(dir.get(), "l", t.path() / "l", me),
                             doctest::Contains("it is a symlink"), Error);
        CHECK_THROWS_WITH_AS(storage::open_trusted_dir(dir.get(), "d", t.path() / "d", me + 1),
                             doctest::Contains("is owned by "), Error);
    }
}

// tree_test.cc: removing trees: any depth with one descriptor at a time,
// unreadable directories, and a symlink swapped in mid-removal.
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "util/error.hh"
#include "util/fd.hh"
#include "util/tree.hh"

namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
    char tmpl[] = "/tmp/ch-tree-test.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    return tmpl;
}

} // namespace

TEST_SUITE("util/tree") {
    TEST_CASE("tree: a tree deeper than PATH_MAX and the open-file limit is removed") {
        const fs::path base = temp_dir();
        // 3000 levels: the path is ~6000 bytes, so only a walk by descriptor
        // can make (and remove) it.
        {
            ch::Fd cur = ch::open_at(AT_FDCWD, base, O_RDONLY | O_DIRECTORY);
            REQUIRE(::mkdirat(cur.get(), "t", 0755) == 0);
            cur = ch::open_at(cur.get(), "t", O_RDONLY | O_DIRECTORY);
            for (int i = 0; i < 3000; i++) {
                REQUIRE(::mkdirat(cur.get(), "d", 0755) == 0);
                if (i % 100 == 0)
                    ::close(::openat(cur.get(), "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
                cur = ch::open_at(cur.get(), "d", O_RDONLY | O_DIRECTORY);
            }
            REQUIRE(::fchmod(cur.get(), 0) == 0); // the deepest can't even be read
        }
        ch::remove_tree(base / "t");
        CHECK(fs::is_empty(base));
        fs::remove(base);
    }

    TEST_CASE("tree: a directory swapped for a symlink is never followed or chmodded through") {
        const fs::path base = temp_dir();
        fs::create_directories(base / "t" / "ro" / "sub");
        fs::permissions(base / "t" / "ro", fs::perms::owner_read | fs::perms::owner_exec);
        std::ofstream(base / "victim") << "mine";
        fs::permissions(base / "victim", fs::perms::owner_read | fs::perms::owner_write);
        bool swapped = false;
        ch::remove_tree(base / "t", [&](const std::string& name) {
            if (name != "ro" || swapped)
                return;
            fs::rename(base / "t" / "ro", base / "moved");
            fs::create_symlink(base / "victim", base / "t" / "ro");
            swapped = true;
        });
        CHECK(swapped);
        CHECK_FALSE(fs::exists(base / "t"));
        CHECK((fs::status(base / "victim").permissions() & fs::perms::all) ==
              (fs::perms::owner_read | fs::perms::owner_write));
        CHECK((fs::status(base / "moved").permissions() & fs::perms::all) ==
              (fs::perms::owner_read | fs::perms::owner_exec));
        fs::permissions(base / "moved", fs::perms::owner_all);
        ch::remove_tree(base);
    }

    TEST_CASE("tree: a directory moved away mid-removal stops it instead of climbing elsewhere") {
        const fs::path base = temp_dir();
        fs::create_directories(base / "t" / "a" / "b");
        std::ofstream(base / "t" / "a" / "b" / "f") << "x";
        fs::create_directories(base / "elsewhere");
        bool moved = false;
        CHECK_THROWS_WITH_AS(ch::remove_tree(base / "t",
                                             [&](const std::string& name) {
                                                 if (name != "b" || moved)
                                                     return;
                                                 fs::rename(base / "t" / "a",
                                                            base / "elsewhere" /
                                                                "a"); // a's ".." is now elsewhere
                                                 moved = true;
                                             }),
                             doctest::Contains("it was moved while being removed"), ch::Error);
        CHECK(fs::exists(base / "elsewhere")); // never removed through the moved directory's ".."
        ch::remove_tree(base);
        CHECK_FALSE(fs::exists(base));
    }
}

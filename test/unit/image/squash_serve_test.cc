// squash_serve_test.cc: the pure parts of the FUSE server (node ids, readdir
// offsets), and SquashFile's checks and lookups on real SquashFS files made
// by mksquashfs (skipped where it is not installed).
#include <cstdlib>
#include <fstream>
#include <set>

#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "image/squash_serve.hh"
#include "util/cpus.hh"
#include "util/error.hh"

using namespace ch;
using namespace ch::image;

TEST_SUITE("image") {

    TEST_CASE("squash_serve: the root inode is FUSE's root node, and back") {
        constexpr std::uint64_t root = 0x12340056;
        static_assert(node_of_inode(root, root) == fuse_root_node);
        static_assert(inode_of_node(fuse_root_node, root) == root);
        CHECK(fuse_root_node == 1); // FUSE_ROOT_ID
    }

    TEST_CASE("squash_serve: other inodes map to distinct nodes, never 0 or 1, and back") {
        const std::uint64_t root = (std::uint64_t{7} << 16) | 0x1a0;
        std::set<std::uint64_t> nodes;
        // Inode ids are (metadata block << 16) | offset within it: 48 bits.
        const std::uint64_t last = (std::uint64_t{0xffffffff} << 16) | 0xffff;
        const std::uint64_t ids[] = {0,        1,        2,        0x20, std::uint64_t{1} << 16,
                                     root - 1, root + 1, root + 2, last};
        for (const std::uint64_t id : ids) {
            const std::uint64_t node = node_of_inode(id, root);
            CHECK(node != 0);
            CHECK(node != fuse_root_node);
            CHECK(inode_of_node(node, root) == id);
            CHECK(nodes.insert(node).second);
        }
        // The same numbers whichever instance computes them: nothing but the
        // ids and the root go in.
        CHECK(node_of_inode(0x20, root) == node_of_inode(0x20, root));
    }

    TEST_CASE("squash_serve: readdir offsets resume the listing where it stopped") {
        static_assert(after_dot == 1 && after_dotdot == 2);
        CHECK(listing_offset_of(0) == 0);
        CHECK(listing_offset_of(after_dot) == 0);
        CHECK(listing_offset_of(after_dotdot) == 0);
        for (const std::int64_t off : {1, 12, 40, 8191, 8192, 1000000})
            CHECK(listing_offset_of(readdir_offset_after(off)) == off);
        CHECK(readdir_offset_after(1) > after_dotdot);
    }

    TEST_CASE("squash_serve: fill_ranges, what a read leaves of its first and last blocks") {
        using R = std::vector<FillRange>;
        const auto eq = [](const R& a, const R& b) {
            if (a.size() != b.size())
                return false;
            for (std::size_t i = 0; i < a.size(); i++)
                if (a[i].first != b[i].first || a[i].off != b[i].off || a[i].len != b[i].len)
                    return false;
            return true;
        };
        const std::uint32_t bs = 128 << 10;
        // Whole blocks: nothing left.
        CHECK(fill_ranges(0, bs, 10 * bs, bs).empty());
        CHECK(fill_ranges(bs, 2 * bs, 10 * bs, bs).empty());
        // A window across two blocks: the first's start, the last's end.
        CHECK(eq(fill_ranges(64 << 10, bs, 10 * bs, bs),
                 R{{true, 0, 64 << 10}, {false, (64 << 10) + bs, 64 << 10}}));
        // Inside one block: both sides of it.
        CHECK(
            eq(fill_ranges(4096, 4096, 10 * bs, bs), R{{true, 0, 4096}, {false, 8192, bs - 8192}}));
        // The last block ends at the file's end.
        CHECK(eq(fill_ranges(bs + 100, 50, bs + 1000, bs),
                 R{{true, bs, 100}, {false, bs + 150, 850}}));
        CHECK(fill_ranges(bs, 1000, bs + 1000, bs).empty());
        // A file smaller than a block.
        CHECK(eq(fill_ranges(10, 10, 30, bs), R{{true, 0, 10}, {false, 20, 10}}));
        // Nothing asked, or past the end: nothing.
        CHECK(fill_ranges(0, 0, 30, bs).empty());
        CHECK(fill_ranges(30, 1, 30, bs).empty());
        CHECK(fill_ranges(20, 20, 30, bs).empty());
        CHECK(fill_ranges(UINT64_MAX - 1, 1, UINT64_MAX, bs).empty() == false);
    }

    TEST_CASE("squash_serve: default thread count") {
        CHECK(default_server_threads(1) == 4);
        CHECK(default_server_threads(2) == 4);
        CHECK(default_server_threads(8) == 16);
        CHECK(default_server_threads(256) == 64);
    }

    TEST_CASE("squash_serve: guesses ahead of the first program only with a CPU to spare") {
        CHECK(idle_cpu_left(1, 2));       // the guesser alone
        CHECK(idle_cpu_left(3, 2));       // and ch-run, and the server: one CPU each, nearly
        CHECK_FALSE(idle_cpu_left(4, 2)); // and another task
        CHECK_FALSE(idle_cpu_left(0, 2)); // nothing counted: can't tell
        CHECK(idle_cpu_left(64, 64));
        // Beside no other task (ch-run starting its FUSE server): a CPU that
        // nothing but the caller runs on.
        CHECK(idle_cpu_left(2, 2, 0));
        CHECK_FALSE(idle_cpu_left(3, 2, 0));    // two busy loops and ch-run
        static_cast<void>(node_has_idle_cpu()); // reads /proc/loadavg without failing
        static_cast<void>(node_has_idle_cpu(0));
    }

    TEST_CASE("squash_serve: ForkOnThisCpu pins to one CPU at most while it lives") {
        cpu_set_t before, during, after;
        REQUIRE(::sched_getaffinity(0, sizeof before, &before) == 0);
        {
            const ForkOnThisCpu pin;
            REQUIRE(::sched_getaffinity(0, sizeof during, &during) == 0);
            if (pin.pinned())
                CHECK(CPU_COUNT(&during) == 1);
            else
                CHECK(CPU_EQUAL(&during, &before));
        }
        REQUIRE(::sched_getaffinity(0, sizeof after, &after) == 0);
        CHECK(CPU_EQUAL(&after, &before));
    }

    TEST_CASE("squash_serve: no prefetching for a process bound to two CPUs or fewer, at most 8 "
              "threads") {
        CHECK(default_prefetch_threads(0) == 0);
        CHECK(default_prefetch_threads(1) == 0);
        CHECK(default_prefetch_threads(2) == 0);
        CHECK(default_prefetch_threads(3) == 1);
        CHECK(default_prefetch_threads(4) == 2);
        CHECK(default_prefetch_threads(64) == 8);
    }

    namespace {

    bool have_mksquashfs() {
        return std::system("command -v mksquashfs >/dev/null 2>&1") == 0;
    }

    // A temporary directory, removed at the end.
    struct TempDir {
        fs::path path;

        TempDir() {
            std::string tmpl = (fs::temp_directory_path() / "ch-unit-squash.XXXXXX").string();
            REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
            path = tmpl;
        }

        ~TempDir() {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    };

    void write(const fs::path& p, const std::string& content) {
        std::ofstream(p) << content;
    }

    // tree/ -> image.sqfs: files, a directory, symlinks of every kind.
    fs::path make_image(const TempDir& t) {
        const fs::path tree = t.path / "tree";
        fs::create_directories(tree / "etc" / "sub");
        fs::create_directories(tree / "home" / "alice");
        write(tree / "etc" / "hosts", "127.0.0.1 localhost\n");
        fs::create_directory_symlink("/home", tree / "abs"); // absolute: from the image root
        fs::create_directory_symlink("../etc", tree / "home" / "rel"); // relative
        fs::create_symlink("loop2", tree / "loop1");
        fs::create_symlink("loop1", tree / "loop2");
        fs::create_symlink("/../../../../etc", tree / "climb"); // ".." stops at the root
        const fs::path img = t.path / "image.sqfs";
        const std::string cmd = cat("mksquashfs '", tree.string(), "' '", img.string(),
                                    "' -noappend -quiet -no-progress >/dev/null 2>&1");
        REQUIRE(std::system(cmd.c_str()) == 0);
        return img;
    }

    } // namespace

    TEST_CASE("squash_serve: SquashFile::has resolves paths as inside a root" *
              doctest::skip(!have_mksquashfs())) {
        const TempDir t;
        SquashFile f = SquashFile::open(make_image(t));
        CHECK(f.has("/"));
        CHECK(f.has("/etc/hosts"));
        CHECK(f.has("etc/sub"));
        CHECK(f.has("/home/alice"));
        CHECK_FALSE(f.has("/etc/passwd"));
        CHECK_FALSE(f.has("/etc/hosts/x")); // through a file
        CHECK(f.has("/abs/alice"));         // absolute symlink, inside the image
        CHECK(f.has("/home/rel/hosts"));    // relative symlink
        CHECK(f.has("/../../etc/hosts"));   // ".." stops at the root
        CHECK(f.has("/climb/hosts"));
        CHECK_FALSE(f.has("/loop1")); // a loop ends, as ELOOP would
    }

    TEST_CASE("squash_serve: SquashFile::open names the file and the reason, exit 84" *
              doctest::skip(!have_mksquashfs())) {
        const TempDir t;
        const fs::path good = make_image(t);
        const fs::path bad = t.path / "bad.sqfs";
        auto open_fails_with = [](const fs::path& p, const std::string& msg) {
            try {
                SquashFile::open(p);
                FAIL("no error for " << p.string());
            } catch (const Error& e) {
                CHECK(std::string(e.what()) == msg);
                CHECK(e.exit_code() == Exit::squash);
            }
        };
        const fs::path missing = t.path / "missing.sqfs";
        open_fails_with(missing,
                        cat("can't mount ", missing.string(), ": No such file or directory"));
        write(bad, "not SquashFS at all");
        open_fails_with(bad,
                        cat("can't mount ", bad.string(), ": not a SquashFS file (bad magic)"));
        write(bad, "hsqs and then nothing");
        open_fails_with(bad, cat("can't mount ", bad.string(),
                                 ": truncated (21 bytes, smaller than a SquashFS superblock)"));
        // mksquashfs pads to 4 KiB; what counts is bytes_used in the superblock.
        fs::copy_file(good, bad, fs::copy_options::overwrite_existing);
        fs::resize_file(bad, 200);
        try {
            SquashFile::open(bad);
            FAIL("no error for a truncated file");
        } catch (const Error& e) {
            CHECK(std::string(e.what()).starts_with(
                cat("can't mount ", bad.string(), ": truncated (200 bytes; the superblock says ")));
            CHECK(e.exit_code() == Exit::squash);
        }
    }

} // TEST_SUITE

// fd_test.cc: descriptors, and the walk that keeps paths inside a root, both
// with openat2 and with the portable fallback (forced here, as crun's CI does).
#include <filesystem>
#include <fstream>
#include <type_traits>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "util/error.hh"
#include "util/fd.hh"
#include "util/tree.hh"

namespace fs = std::filesystem;
using ch::Fd;

static_assert(!std::is_copy_constructible_v<Fd>);
static_assert(std::is_nothrow_move_constructible_v<Fd>);

namespace {

struct TempTree {
    fs::path root;
    fs::path outside;

    TempTree() {
        char tmpl[] = "/tmp/ch-fd-test.XXXXXX";
        const fs::path base = ::mkdtemp(tmpl);
        root = base / "root";
        outside = base / "outside";
        fs::create_directories(root / "usr/lib");
        fs::create_directories(outside);
        std::ofstream(outside / "secret") << "host";
        std::ofstream(root / "usr/lib/libx.so") << "x";
        fs::create_symlink("usr/lib", root / "lib");            // relative
        fs::create_symlink("/usr/lib", root / "abslib");        // absolute: must stay inside
        fs::create_symlink("../../../../outside", root / "up"); // climbs: must stay inside
        fs::create_symlink(outside, root / "host");             // absolute host path
        fs::create_symlink("loop2", root / "loop1");
        fs::create_symlink("loop1", root / "loop2");
    }

    ~TempTree() { ch::remove_tree(root.parent_path()); }
};

ino_t ino_of(int fd) {
    struct stat st {};

    REQUIRE(::fstat(fd, &st) == 0);
    return st.st_ino;
}

ino_t ino_of(const fs::path& p) {
    struct stat st {};

    REQUIRE(::lstat(p.c_str(), &st) == 0);
    return st.st_ino;
}

using Resolver = Fd (*)(int, std::string_view, ch::FollowLast);

void check_resolver(Resolver resolve) {
    TempTree t;
    const Fd root = ch::open_at(AT_FDCWD, t.root, O_PATH | O_DIRECTORY);
    Fd fd = resolve(root.get(), "/lib/libx.so", ch::FollowLast::yes);
    REQUIRE(fd);
    CHECK(ino_of(fd.get()) == ino_of(t.root / "usr/lib/libx.so"));
    fd = resolve(root.get(), "abslib/libx.so", ch::FollowLast::yes);
    REQUIRE(fd);
    CHECK(ino_of(fd.get()) == ino_of(t.root / "usr/lib/libx.so"));
    // ".." and symlinks that climb stop at the root: "outside" is looked up in
    // the image, where it does not exist.
    CHECK_FALSE(resolve(root.get(), "up/secret", ch::FollowLast::yes));
    CHECK(errno == ENOENT);
    CHECK_FALSE(resolve(root.get(), "host/secret", ch::FollowLast::yes));
    CHECK_FALSE(resolve(root.get(), "../../outside/secret", ch::FollowLast::yes));
    fd = resolve(root.get(), "../../usr/lib", ch::FollowLast::yes);
    REQUIRE(fd);
    CHECK(ino_of(fd.get()) == ino_of(t.root / "usr/lib"));
    CHECK_FALSE(resolve(root.get(), "loop1", ch::FollowLast::yes));
    CHECK(errno == ELOOP);
    // Not following the last component gives the link itself.
    fd = resolve(root.get(), "lib", ch::FollowLast::no);
    REQUIRE(fd);
    CHECK(ino_of(fd.get()) == ino_of(t.root / "lib"));
    // The root itself.
    fd = resolve(root.get(), "/", ch::FollowLast::yes);
    REQUIRE(fd);
    CHECK(ino_of(fd.get()) == ino_of(t.root));
}

} // namespace

TEST_SUITE("util/fd") {
    TEST_CASE("fd: resolve_in_root stays inside the root (openat2 where available)") {
        check_resolver(&ch::resolve_in_root);
    }

    TEST_CASE("fd: resolve_in_root stays inside the root (portable walk, as without openat2)") {
        check_resolver(&ch::resolve_in_root_walk);
    }

    TEST_CASE("fd: make_in_root creates inside the root, through symlinks re-rooted") {
        TempTree t;
        const Fd root = ch::open_at(AT_FDCWD, t.root, O_PATH | O_DIRECTORY);
        ch::make_in_root(root.get(), "/host/new/dir", false);
        // "host" points at an absolute host path; inside the root that path is
        // created under the image, never on the host.
        CHECK(fs::is_directory(t.root / t.outside.relative_path() / "new/dir"));
        CHECK_FALSE(fs::exists(t.outside / "new"));
        ch::make_in_root(root.get(), "lib/newfile", true);
        CHECK(fs::is_regular_file(t.root / "usr/lib/newfile"));
    }

    TEST_CASE("fd: normalize_abs") {
        CHECK(ch::normalize_abs("//a/./b/../c/") == "/a/c");
        CHECK(ch::normalize_abs("../../x") == "/x");
        CHECK(ch::normalize_abs("") == "/");
        // Already normal: as it is (the fast way); else as above.
        CHECK(ch::normalize_abs("/") == "/");
        CHECK(ch::normalize_abs("/usr/lib/libz.so.1") == "/usr/lib/libz.so.1");
        CHECK(ch::normalize_abs("/a.b/..c/...") == "/a.b/..c/...");
        CHECK(ch::normalize_abs("/a/") == "/a");
        CHECK(ch::normalize_abs("/a//b") == "/a/b");
        CHECK(ch::normalize_abs("/a/.") == "/a");
        CHECK(ch::normalize_abs("/a/..") == "/");
        CHECK(ch::normalize_abs("/..") == "/");
        CHECK(ch::normalize_abs("a/b") == "/a/b");
    }

    TEST_CASE("fd: every descriptor is close-on-exec") {
        TempTree t;
        const Fd fd = ch::open_at(AT_FDCWD, t.root, O_RDONLY | O_DIRECTORY);
        CHECK((::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
        const Fd r = ch::resolve_in_root(fd.get(), "usr/lib");
        CHECK((::fcntl(r.get(), F_GETFD) & FD_CLOEXEC) != 0);
        const Fd w = ch::resolve_in_root_walk(fd.get(), "usr/lib");
        CHECK((::fcntl(w.get(), F_GETFD) & FD_CLOEXEC) != 0);
    }

    TEST_CASE("fd: open_at names the path in its error") {
        CHECK_THROWS_WITH_AS(ch::open_at(AT_FDCWD, "/nonexistent/x", O_RDONLY),
                             "can't open /nonexistent/x: No such file or directory", ch::SysError);
    }
}

TEST_CASE("fd: read_all: a file's size is only a hint, the limit is what counts") {
    TempTree t;
    const fs::path f = t.outside / "data";
    std::ofstream(f) << std::string(20000, 'a');
    {
        const Fd fd(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
        CHECK(ch::read_all(fd.get(), "data", 20000) == std::string(20000, 'a'));
    }
    {
        const Fd fd(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
        CHECK_THROWS_WITH(ch::read_all(fd.get(), "data", 19999),
                          doctest::Contains("more than the 19999 bytes allowed"));
    }
    // /proc files say size 0 and have content: read to the end all the same.
    const Fd status(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    CHECK(ch::read_all(status.get(), "status", 1 << 20).find("Name:") == 0);
}

TEST_CASE("fd: MappedFile: a regular file's bytes, the limit checked first") {
    TempTree t;
    const fs::path f = t.outside / "data";
    std::ofstream(f) << std::string(20000, 'a') << "end";
    const auto open = [&](const fs::path& p) {
        return Fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    };
    {
        const Fd fd = open(f);
        auto m = ch::MappedFile::map(fd.get(), 20003, "data");
        REQUIRE(m);
        CHECK(m->view().size() == 20003);
        CHECK(m->view().substr(20000) == "end");
        // Moved, the bytes stay; the first owner has none.
        ch::MappedFile other = std::move(*m);
        CHECK(other.view().substr(20000) == "end");
        CHECK(m->view().empty());
    }
    {
        const Fd fd = open(f);
        errno = 0;
        CHECK_FALSE(ch::MappedFile::map(fd.get(), 20002, "data"));
        CHECK(errno == EFBIG);
    }
    {
        std::ofstream(t.outside / "empty");
        const Fd fd = open(t.outside / "empty");
        const auto m = ch::MappedFile::map(fd.get(), 10, "empty");
        REQUIRE(m);
        CHECK(m->view().empty());
    }
    {
        // Not a regular file: a directory, or /proc's files (size 0).
        const Fd dir = open(t.outside);
        errno = 0;
        CHECK_FALSE(ch::MappedFile::map(dir.get(), 1 << 20, "dir"));
        CHECK(errno == EINVAL);
    }
}

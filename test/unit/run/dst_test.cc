// dst_test.cc: destinations are created only on the root's own mount
// (util/fd.cc make_in_root, as apply uses it), checked with real mounts in a
// child that enters ch-run's namespaces (apply.cc enter_namespaces).
#include <cstdlib>
#include <filesystem>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "run/apply.hh"
#include "util/child.hh"
#include "util/error.hh"
#include "util/fd.hh"

using namespace ch;
namespace fs = std::filesystem;

namespace {

bool can_unshare_user() {
    return !run_in_child([] {
        const unsigned uid = ::geteuid();
        const unsigned gid = ::getegid();
        run::enter_namespaces({uid, uid}, {gid, gid});
    });
}

struct TempDir {
    fs::path path;

    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "ch-dst-test.XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }

    ~TempDir() { fs::remove_all(path); }
};

// In the child: root/ with a tmpfs on root/m (standing for a bind such as
// /tmp), and a symlink root/l -> /m/x.
void set_up(const fs::path& root) {
    const unsigned uid = ::geteuid();
    const unsigned gid = ::getegid();
    run::enter_namespaces({uid, uid}, {gid, gid});
    if (::mount("tmpfs", (root / "m").c_str(), "tmpfs", 0, "size=1m") != 0)
        throw_errno("can't mount tmpfs");
    if (::mkdir((root / "m" / "exists").c_str(), 0755) != 0)
        throw_errno("can't mkdir in the tmpfs");
}

// What a failed creation left in the tmpfs, from inside the child.
void expect_only_exists(const fs::path& m) {
    for (const auto& e : fs::directory_iterator(m))
        if (e.path().filename() != "exists")
            fail("created under the mount: ", e.path().string());
    if (!fs::is_empty(m / "exists"))
        fail("created under the mount, in ", (m / "exists").string());
}

void expect_error(const std::function<void()>& f, const std::string& want) {
    try {
        f();
    } catch (const Error& e) {
        if (std::string(e.what()).find(want) == std::string::npos)
            fail("wrong error: ", e.what(), " (wanted: ", want, ")");
        return;
    }
    fail("no error (wanted: ", want, ")");
}

} // namespace

TEST_SUITE("run/dst") {
    TEST_CASE("dst: mount ids from statx and from /proc/self/fdinfo agree") {
        const Fd a = open_at(AT_FDCWD, "/", O_PATH);
        const Fd b = open_at(AT_FDCWD, "/proc", O_PATH);
        REQUIRE(mount_id(a.get()).has_value());
        CHECK(mount_id(a.get()) == mount_id_from_fdinfo(a.get()));
        CHECK(mount_id(b.get()) == mount_id_from_fdinfo(b.get()));
        CHECK(mount_id(a.get()) != mount_id(b.get()));
    }

    TEST_CASE("dst: nothing is created under another mount, directly or through a symlink" *
              doctest::skip(!can_unshare_user())) {
        TempDir t;
        const fs::path root = t.path / "root";
        fs::create_directories(root / "m");
        fs::create_directories(root / "mnt");
        fs::create_symlink("/m/x", root / "mnt" / "l");
        fs::create_symlink("/m", root / "mnt" / "lm");
        const auto err = run_in_child([&] {
            set_up(root);
            const Fd r = open_at(AT_FDCWD, root, O_PATH | O_DIRECTORY);
            // On root's own mount: created.
            make_in_root(r.get(), "/a/b", false);
            make_in_root(r.get(), "/a/file", true);
            // Passing through the mount and back (m/..) ends on root's mount: fine.
            make_in_root(r.get(), "/m/../c", false);
            // Under the mount: refused, naming it.
            expect_error([&] { make_in_root(r.get(), "/m/new", false); },
                         "can't create /m/new under the mount at /m");
            expect_error([&] { make_in_root(r.get(), "/m/new/deeper", false); },
                         "can't create /m/new under the mount at /m");
            expect_error([&] { make_in_root(r.get(), "/m/exists/f", true); },
                         "can't create /m/exists/f under the mount at /m");
            // Through image symlinks that lead there.
            expect_error([&] { make_in_root(r.get(), "/mnt/l/sub", false); },
                         "can't create /m/x under the mount at /m");
            expect_error([&] { make_in_root(r.get(), "/mnt/lm/sub", false); },
                         "can't create /m/sub under the mount at /m");
            // An existing destination resolves wherever it is.
            if (!resolve_in_root(r.get(), "/mnt/lm/exists"))
                fail("existing destination under the mount not found");
            expect_only_exists(root / "m");
        });
        CHECK_MESSAGE(!err, err.value_or(""));
        CHECK(fs::is_directory(root / "a" / "b"));
        CHECK(fs::is_regular_file(root / "a" / "file"));
        CHECK(fs::is_directory(root / "c"));
        CHECK(fs::is_empty(root / "m")); // the directory under the mount, too
    }
}

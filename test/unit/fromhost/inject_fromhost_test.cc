// inject_fromhost_test.cc: ch-fromhost's placement rules and its
// all-or-nothing copy, on real directories.
#include <fcntl.h>
#include <sys/stat.h>

#include <doctest/doctest.h>

#include "../image/fixtures.hh"
#include "fromhost/fromhost.hh"
#include "util/error.hh"
#include "util/fd.hh"

using namespace ch;
using namespace ch::fromhost;
using ch::test::spit;
using ch::test::TempDir;

TEST_CASE("is_shared_lib_name: Charliecloud's rule") {
    CHECK(is_shared_lib_name("libfoo.so"));
    CHECK(is_shared_lib_name("libfoo.so.1"));
    CHECK(is_shared_lib_name("libfoo.so.1.2.3"));
    CHECK(is_shared_lib_name("mca_btl_tcp.so"));
    CHECK_FALSE(is_shared_lib_name("libfoo.son"));
    CHECK_FALSE(is_shared_lib_name("foo.sock"));
    CHECK_FALSE(is_shared_lib_name(".so"));
    CHECK_FALSE(is_shared_lib_name("libfoo.a"));
}

TEST_CASE("place: --dest wins, libraries to the library directory, other files stay") {
    const auto p = place({{"/h/lib/libx.so.1", std::nullopt, "--path"},
                          {"/etc/site.conf", std::nullopt, "--path"},
                          {"/h/y.so", std::string("/opt/y"), "--path"},
                          {"/h/lib/libx.so.1", std::nullopt, "--path"}},
                         "/usr/local/lib");
    REQUIRE(p.size() == 3); // the same file twice: once
    CHECK(p[0].dir == "/usr/local/lib");
    CHECK(p[0].library);
    CHECK(p[1].dir == "/etc");
    CHECK_FALSE(p[1].library);
    CHECK(p[2].dir == "/opt/y");
    CHECK_THROWS_WITH(place({{"rel/x", std::nullopt, "--path"}}, "/l"),
                      "can't inject 'rel/x' (from --path): host paths must be absolute");
    CHECK_THROWS_WITH(
        place({{"/a/libx.so.1", std::nullopt, "--path"}, {"/b/libx.so.1", std::nullopt, "--path"}},
              "/l"),
        doctest::Contains("both would be"));
    CHECK_THROWS_WITH(place({{"/a/x", std::string("rel"), "--path"}}, "/l"),
                      doctest::Contains("--dest must be an absolute path"));
}

TEST_CASE("copy_into: all files, or none and no directories made") {
    TempDir t;
    const fs::path root = t / "img";
    fs::create_directories(root / "etc");
    spit(root / "etc/old", "old");
    spit(t / "a", "aaa");
    spit(t / "old", "new");
    ::chmod((t / "a").c_str(), 04755); // setuid: dropped
    const Fd rootfd = open_at(AT_FDCWD, root, O_PATH | O_DIRECTORY);
    CHECK(copy_into(rootfd.get(), root,
                    {{t / "a", "/new/dir", "a", false}, {t / "old", "/etc", "old", false}}) == 2);
    CHECK(ch::read_file(root / "new/dir/a") == "aaa");
    CHECK(ch::read_file(root / "etc/old") == "new");

    struct stat st {};

    REQUIRE(::stat((root / "new/dir/a").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0755);

    // The second fails: the first is removed, and the directories it made.
    fs::create_directories(t / "adir");
    CHECK_THROWS_WITH(
        copy_into(rootfd.get(), root,
                  {{t / "a", "/other/deep", "a", false}, {t / "adir", "/etc", "adir", false}}),
        doctest::Contains("not a regular file"));
    CHECK_FALSE(fs::exists(root / "other"));
    for (const auto& e : fs::directory_iterator(root / "etc"))
        CHECK(e.path().filename() == "old");

    // A destination that is a directory in the image.
    fs::create_directories(root / "etc/d");
    CHECK_THROWS_WITH(copy_into(rootfd.get(), root, {{t / "a", "/etc", "d", false}}),
                      doctest::Contains("a directory is there"));
}

TEST_CASE("command_lines and file_lines") {
    CHECK(command_lines("printf '/a\\n\\n  /b  \\n# c\\n'") ==
          std::vector<std::string>{"/a", "/b"});
    CHECK_THROWS_WITH(command_lines("exit 3"), doctest::Contains("exited with status 3"));
    TempDir t;
    spit(t / "list", "/x\n#y\n\n/z\n");
    CHECK(file_lines(t / "list") == std::vector<std::string>{"/x", "/z"});
    CHECK_THROWS_WITH(file_lines(t / "none"), doctest::Contains("can't read --file"));
}

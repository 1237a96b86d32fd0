// dir_test.cc: the directory source and sink on real directories, and the
// whole stream (tar -> rules -> directory) on hostile archives.
#include <algorithm>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fixtures.hh"
#include "image/convert.hh"
#include "image/formats.hh"
#include "util/error.hh"
#include "util/fd.hh"

using namespace ch;
using namespace ch::image;
using namespace ch::test;
using T = EntryType;

namespace {

struct stat lstat_of(const fs::path& p) {
    struct stat st {};

    if (::lstat(p.c_str(), &st) != 0)
        throw_errno("lstat ", p.string());
    return st;
}

bool user_xattrs_work(const fs::path& dir) {
    const fs::path probe = dir / "xattr-probe";
    spit(probe, "");
    const bool ok = ::setxattr(probe.c_str(), "user.probe", "1", 1, 0) == 0;
    fs::remove(probe);
    return ok;
}

// Feed entries straight into a sink, bypassing the rules.
void feed(Sink& sink, ListSource& list) {
    list.rewind();
    Entry e;
    while (list.next(e))
        sink.add(e, list);
}

std::vector<std::string> names_in(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& d : fs::directory_iterator(dir))
        out.push_back(d.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace

TEST_SUITE("image/dir") {

    TEST_CASE(
        "dir source: sorted, parents first, hard links, sparse files, symlinks not followed") {
        TempDir tmp;
        const auto root = tmp / "img";
        fs::create_directories(root / "b" / "sub");
        spit(root / "b" / "z", "zz");
        spit(root / "a", "aa");
        fs::create_hard_link(root / "a", root / "b" / "hard");
        fs::create_symlink("/etc", root / "c");
        {
            const Fd fd = open_at(AT_FDCWD, root / "sparse", O_WRONLY | O_CREAT, 0644);
            REQUIRE(::ftruncate(fd.get(), 64 << 20) == 0);
            REQUIRE(::pwrite(fd.get(), "data", 4, 32 << 20) == 4);
        }
        REQUIRE(::mkfifo((root / "fifo").c_str(), 0600) == 0);
        ::chmod((root / "a").c_str(), 04751);

        auto src = make_dir_source(root);
        std::vector<Entry> es;
        std::vector<std::string> data;
        Entry e;
        while (src->next(e)) {
            data.push_back(read_all(*src));
            es.push_back(e);
        }
        std::vector<std::string> paths;
        for (const auto& x : es)
            paths.push_back(x.path);
        CHECK(paths == std::vector<std::string>{"", "a", "b", "b/hard", "b/sub", "b/z", "c", "fifo",
                                                "sparse"});
        CHECK(es[0].type == T::dir);
        CHECK(es[1].type == T::file);
        CHECK(es[1].mode == 04751);
        CHECK(data[1] == "aa");
        CHECK(es[3].type == T::hardlink);
        CHECK(es[3].link_target == "a");
        CHECK(es[6].type == T::symlink);
        CHECK(es[6].link_target == "/etc");
        CHECK(es[7].type == T::fifo);
        CHECK(es[8].size == 64u << 20);
        if (es[8].sparse) { // tmpfs, ext4, xfs and btrfs all report holes
            CHECK(es[8].data_size() < 1u << 20);
            CHECK(data[8].size() == es[8].data_size());
            CHECK(data[8].find("data") != std::string::npos);
        } else {
            MESSAGE("this filesystem reports no holes");
        }
    }

    TEST_CASE("dir source: user.* xattrs") {
        TempDir tmp;
        if (!user_xattrs_work(tmp.path())) {
            MESSAGE("no user xattrs on ", tmp.path().string(), ": not checked");
            return;
        }
        const auto root = tmp / "img";
        fs::create_directories(root);
        spit(root / "f", "");
        REQUIRE(::setxattr((root / "f").c_str(), "user.a", "1", 1, 0) == 0);
        auto src = make_dir_source(root);
        Entry e;
        src->next(e);
        REQUIRE(src->next(e));
        REQUIRE(e.xattrs.size() == 1);
        CHECK(e.xattrs[0].name == "user.a");
        CHECK(e.xattrs[0].value == "1");
        auto without = make_dir_source(root, false);
        without->next(e);
        without->next(e);
        CHECK(e.xattrs.empty());
    }

    TEST_CASE("dir sink: writes every type, keeps holes, restores times, publishes atomically") {
        TempDir tmp;
        const auto dest = tmp / "out";
        Entry dir{.path = "d", .type = T::dir, .mode = 0555, .mtime = 1500000000};
        Entry file{.path = "d/f", .type = T::file, .mode = 0640, .mtime = 1500000001, .size = 3};
        Entry sparse{.path = "s",
                     .type = T::file,
                     .mode = 0644,
                     .size = 5ull << 30,
                     .sparse = std::vector<Extent>{{1 << 20, 4}, {(5ull << 30) - 4, 4}}};
        Entry link{.path = "l",
                   .type = T::symlink,
                   .mode = 0777,
                   .mtime = 1500000002,
                   .link_target = "d/f"};
        Entry hard{.path = "h", .type = T::hardlink, .link_target = "d/f"};
        ListSource list({dir, file, sparse, link, hard}, {"", "abc", "1234wxyz", "", ""});
        {
            auto sink = make_dir_sink(dest);
            feed(*sink, list);
            CHECK_FALSE(fs::exists(dest)); // not before commit
            sink->commit();
        }
        CHECK(names_in(tmp.path()) == std::vector<std::string>{"out"});
        CHECK(slurp(dest / "d" / "f") == "abc");
        CHECK((lstat_of(dest / "d").st_mode & 07777) == 0555);
        CHECK(lstat_of(dest / "d").st_mtim.tv_sec == 1500000000);
        CHECK((lstat_of(dest / "d" / "f").st_mode & 07777) == 0640);
        CHECK(lstat_of(dest / "d" / "f").st_mtim.tv_sec == 1500000001);
        CHECK(lstat_of(dest / "d" / "f").st_uid == ::getuid());
        CHECK(fs::read_symlink(dest / "l") == "d/f");
        CHECK(lstat_of(dest / "l").st_mtim.tv_sec == 1500000002);
        CHECK(lstat_of(dest / "h").st_ino == lstat_of(dest / "d" / "f").st_ino);
        const struct stat s = lstat_of(dest / "s");
        CHECK(static_cast<std::uint64_t>(s.st_size) == 5ull << 30);
        CHECK(s.st_blocks * 512 < (1 << 20)); // the holes stayed holes
        const Fd fd = open_at(AT_FDCWD, dest / "s", O_RDONLY);
        char buf[4];
        REQUIRE(::pread(fd.get(), buf, 4, (5ll << 30) - 4) == 4);
        CHECK(std::string(buf, 4) == "wxyz");
        ::chmod((dest / "d").c_str(), 0755); // so TempDir can clean up as a user
    }

    TEST_CASE("dir sink: later entries replace earlier ones of another type; whiteouts remove") {
        TempDir tmp;
        const auto dest = tmp / "out";
        ListSource list(
            {Entry{.path = "x", .type = T::dir}, Entry{.path = "x/inner", .type = T::file},
             Entry{.path = "x", .type = T::file, .size = 4}, // file over directory
             Entry{.path = "y", .type = T::symlink, .link_target = "x"},
             Entry{.path = "y", .type = T::dir, .mode = 0700}, // directory over symlink
             Entry{.path = "y/z", .type = T::file}, Entry{.path = "w", .type = T::dir},
             Entry{.path = "w/deep", .type = T::dir}, Entry{.path = "w/deep/f", .type = T::file},
             Entry{.path = "w", .type = T::whiteout},
             Entry{.path = "gone/never", .type = T::whiteout}}, // missing: nothing to do
            {"", "", "file"});
        auto sink = make_dir_sink(dest);
        feed(*sink, list);
        sink->commit();
        CHECK(slurp(dest / "x") == "file");
        CHECK(fs::is_directory(fs::symlink_status(dest / "y")));
        CHECK(fs::exists(dest / "y" / "z"));
        CHECK_FALSE(fs::exists(fs::symlink_status(dest / "w")));
    }

    TEST_CASE("dir sink: never writes through a symlink, even without the rules") {
        TempDir tmp;
        const auto outside = tmp / "outside";
        fs::create_directories(outside);
        const auto dest = tmp / "out";
        ListSource list({Entry{.path = "a", .type = T::symlink, .link_target = outside.string()},
                         Entry{.path = "a/evil", .type = T::file, .size = 1}},
                        {"", "x"});
        {
            auto sink = make_dir_sink(dest);
            CHECK_THROWS_WITH_AS(feed(*sink, list),
                                 doctest::Contains("parent 'a' is a symlink (not followed)"),
                                 Error);
        }
        CHECK(fs::is_empty(outside));
        CHECK(names_in(tmp.path()) == std::vector<std::string>{"outside"}); // no output, no staging
    }

    TEST_CASE("dir sink: a missing parent is an error, not something invented") {
        TempDir tmp;
        ListSource list({Entry{.path = "no/such/f", .type = T::file}});
        auto sink = make_dir_sink(tmp / "out");
        CHECK_THROWS_WITH_AS(feed(*sink, list), doctest::Contains("parent 'no' is missing"), Error);
    }

    TEST_CASE("dir sink: user.* xattrs are written") {
        TempDir tmp;
        if (!user_xattrs_work(tmp.path())) {
            MESSAGE("no user xattrs on ", tmp.path().string(), ": not checked");
            return;
        }
        ListSource list(
            {Entry{.path = "f", .type = T::file, .xattrs = {{"user.color", "blue"}}},
             Entry{.path = "d", .type = T::dir, .mode = 0755, .xattrs = {{"user.k", "v"}}}});
        auto sink = make_dir_sink(tmp / "out");
        feed(*sink, list);
        sink->commit();
        char buf[16] = {};
        CHECK(::getxattr((tmp / "out" / "f").c_str(), "user.color", buf, sizeof buf) == 4);
        CHECK(std::string(buf) == "blue");
        CHECK(::getxattr((tmp / "out" / "d").c_str(), "user.k", buf, sizeof buf) == 1);
    }

    TEST_CASE("dir source and sink: names longer than PATH_MAX") {
        TempDir tmp;
        std::string path;
        std::vector<Entry> es;
        for (int i = 0; i < 24; i++) { // 24 x 250 bytes > 4096
            path += (path.empty() ? "" : "/") + std::string(250, static_cast<char>('a' + i));
            es.push_back(Entry{.path = path, .type = T::dir, .mode = 0755});
        }
        es.push_back(Entry{.path = path + "/leaf", .type = T::file, .size = 4});
        std::vector<std::string> data(es.size());
        data.back() = "deep";
        ListSource list(es, data);
        {
            auto sink = make_dir_sink(tmp / "out");
            feed(*sink, list);
            sink->commit();
        }
        auto src = make_dir_source(tmp / "out");
        Entry e;
        std::string last, content;
        while (src->next(e)) {
            last = e.path;
            content = read_all(*src);
        }
        CHECK(last == path + "/leaf");
        CHECK(content == "deep");
    }

    TEST_CASE("storage: images go to STORAGE/img/NAME; bad names are refused") {
        TempDir tmp;
        ListSource list({Entry{.path = "", .type = T::dir}, Entry{.path = "f", .size = 2}},
                        {"", "hi"});
        {
            auto sink = make_storage_sink(tmp / "st", "example.com/a/b:1");
            feed(*sink, list);
            sink->commit();
        }
        CHECK(slurp(tmp / "st" / "img" / "example.com%a%b+1" / "f") == "hi");
        auto src = make_storage_source(tmp / "st", "example.com/a/b:1");
        CHECK(src->describe() == "storage image example.com/a/b:1");
        CHECK_THROWS_WITH_AS(make_storage_source(tmp / "st", "nope"),
                             doctest::Contains("can't find image nope in storage"), Error);
        CHECK_THROWS_WITH_AS(make_storage_sink(tmp / "st", ".."),
                             doctest::Contains("bad image name '..'"), Error);
        CHECK_THROWS_AS(make_storage_sink(tmp / "st", "../x"), Error);
    }

    TEST_CASE("pump: hostile tarballs end inside the image or fail, leaving nothing") {
        TempDir tmp;
        const auto outside = tmp / "outside";
        fs::create_directories(outside);
        const auto tar = tmp / "evil.tar";
        const auto dest = tmp / "out";

        SUBCASE("symlink, then a write through it: resolved inside the image") {
            write_tar(tar, {{.name = "escape", .type = T::symlink, .link = outside.string()},
                            {.name = "escape/pwned", .data = "gotcha"},
                            {.name = "rel", .type = T::symlink, .link = "../../../../../../.."},
                            {.name = "rel/tmp/pwned2", .data = "gotcha"}});
            auto src = make_tar_source(tar);
            auto sink = make_dir_sink(dest);
            UnpackRules rules;
            pump(*src, *sink, rules, dest.string());
            sink->commit();
            CHECK(fs::is_empty(outside));
            CHECK(slurp(dest / outside.relative_path() / "pwned") == "gotcha");
            CHECK(slurp(dest / "tmp" / "pwned2") == "gotcha");
            CHECK(fs::read_symlink(dest / "escape") == outside); // kept verbatim
        }
        SUBCASE("..: refused, nothing left") {
            write_tar(tar,
                      {{.name = "ok", .data = "1"}, {.name = "a/../../outside/x", .data = "bad"}});
            auto src = make_tar_source(tar);
            {
                auto sink = make_dir_sink(dest);
                UnpackRules rules;
                CHECK_THROWS_WITH_AS(pump(*src, *sink, rules, dest.string()),
                                     ("can't unpack " + tar.string() +
                                      ": entry 'a/../../outside/x': path leaves the image")
                                         .c_str(),
                                     Error);
            }
            CHECK(names_in(tmp.path()) == std::vector<std::string>{"evil.tar", "outside"});
        }
        SUBCASE("hard link to a host file: refused") {
            write_tar(tar, {{.name = "passwd", .type = T::hardlink, .link = "/etc/passwd"}});
            auto src = make_tar_source(tar);
            auto sink = make_dir_sink(dest);
            UnpackRules rules;
            CHECK_THROWS_WITH_AS(
                pump(*src, *sink, rules, dest.string()),
                doctest::Contains(
                    "entry 'passwd': hard link target '/etc/passwd' is not an earlier entry"),
                Error);
        }
        SUBCASE("device nodes and FIFOs dropped, setuid stripped") {
            write_tar(tar, {{.name = "dev/", .type = T::dir, .mode = 0755},
                            {.name = "dev/null", .type = T::chardev},
                            {.name = "fifo", .type = T::fifo},
                            {.name = "suid", .data = "#!/bin/sh\n", .mode = 06755}});
            auto src = make_tar_source(tar);
            auto sink = make_dir_sink(dest);
            UnpackRules rules;
            pump(*src, *sink, rules, dest.string());
            sink->commit();
            CHECK(fs::is_directory(dest / "dev"));
            CHECK(fs::is_empty(dest / "dev"));
            CHECK_FALSE(fs::exists(fs::symlink_status(dest / "fifo")));
            CHECK((lstat_of(dest / "suid").st_mode & 07777) == 0755);
            CHECK(rules.stats().specials == 2);
        }
    }

} // TEST_SUITE

TEST_SUITE("image/convert") {

    TEST_CASE("why_not_replace: images and image archives may be replaced, nothing else") {
        TempDir tmp;
        CHECK(why_not_replace(tmp / "missing").empty());
        fs::create_directories(tmp / "empty");
        CHECK(why_not_replace(tmp / "empty").empty());
        fs::create_directories(tmp / "img" / "etc");
        fs::create_directories(tmp / "img" / "ch");
        CHECK(why_not_replace(tmp / "img").empty());
        fs::create_directories(tmp / "home" / "etc");
        fs::create_directory_symlink(tmp / "img" / "ch",
                                     tmp / "home" / "ch"); // a symlink is not a directory here
        CHECK(why_not_replace(tmp / "home") == "it is a directory that doesn't look like an image");
        spit(tmp / "empty-file", "");
        CHECK(why_not_replace(tmp / "empty-file").empty());
        spit(tmp / "x.sqfs", "hsqs and more");
        CHECK(why_not_replace(tmp / "x.sqfs").empty());
        write_tar(tmp / "x.tar", {{.name = "f"}});
        CHECK(why_not_replace(tmp / "x.tar").empty());
        write_tar(tmp / "x.tar.zst", {{.name = "f"}}, Filter::zstd);
        CHECK(why_not_replace(tmp / "x.tar.zst").empty());
        spit(tmp / "notes.txt", "precious");
        CHECK(why_not_replace(tmp / "notes.txt") == "it is a file that is not an image archive");
        fs::create_symlink(tmp / "notes.txt", tmp / "link");
        CHECK(why_not_replace(tmp / "link") == "it is not a regular file or directory");
    }

} // TEST_SUITE

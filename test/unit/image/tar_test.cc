// tar_test.cc: the tar source and sink against real archives written by
// libarchive into a temporary directory.
#include <sys/stat.h>

#include <doctest/doctest.h>

#include "fixtures.hh"
#include "image/formats.hh"
#include "image/pump.hh"
#include "util/error.hh"
#include "util/strings.hh"

using namespace ch;
using namespace ch::image;
using namespace ch::test;
using T = EntryType;

namespace {

std::vector<Entry> read_entries(Source& src, std::vector<std::string>* data = nullptr) {
    std::vector<Entry> out;
    Entry e;
    while (src.next(e)) {
        if (data != nullptr)
            data->push_back(read_all(src));
        out.push_back(e);
    }
    return out;
}

// A file of `size` bytes with "DATA" at two offsets and holes elsewhere.
std::string sparse_content(std::size_t size, std::vector<Extent>& extents) {
    std::string s(size, '\0');
    extents = {{4096, 4096}, {size - 4096, 4096}};
    for (const auto& x : extents)
        for (std::size_t i = 0; i < x.length; i++)
            s[x.offset + i] = static_cast<char>('A' + i % 26);
    return s;
}

} // namespace

TEST_SUITE("image/tar") {

    TEST_CASE("tar source: reads every entry type with its metadata and data") {
        TempDir tmp;
        const auto file = tmp / "all.tar";
        write_tar(file, {
                            {.name = "./etc/", .type = T::dir, .mode = 0755},
                            {.name = "./etc/hosts",
                             .data = "127.0.0.1 localhost\n",
                             .mode = 04755,
                             .xattrs = {{"user.greeting", "hi"}}},
                            {.name = "./etc/link", .type = T::symlink, .link = "hosts"},
                            {.name = "./etc/hard", .type = T::hardlink, .link = "./etc/hosts"},
                            {.name = "./dev/null", .type = T::chardev},
                            {.name = "./fifo", .type = T::fifo},
                        });
        auto src = make_tar_source(file);
        std::vector<std::string> data;
        const auto es = read_entries(*src, &data);
        REQUIRE(es.size() == 6);
        CHECK(es[0].path == "./etc/");
        CHECK(es[0].type == T::dir);
        CHECK(es[1].type == T::file);
        CHECK(es[1].mode == 04755);
        CHECK(es[1].uid == 1234);
        CHECK(es[1].gid == 5678);
        CHECK(es[1].mtime == 1700000000);
        CHECK(es[1].size == 20);
        CHECK(data[1] == "127.0.0.1 localhost\n");
        REQUIRE(es[1].xattrs.size() == 1);
        CHECK(es[1].xattrs[0].name == "user.greeting");
        CHECK(es[1].xattrs[0].value == "hi");
        CHECK(es[2].type == T::symlink);
        CHECK(es[2].link_target == "hosts");
        CHECK(es[3].type == T::hardlink);
        CHECK(es[3].link_target == "./etc/hosts");
        CHECK(data[3].empty());
        CHECK(es[4].type == T::chardev);
        CHECK(es[4].dev_major == 1);
        CHECK(es[4].dev_minor == 3);
        CHECK(es[5].type == T::fifo);
        // rewind starts over
        src->rewind();
        Entry e;
        REQUIRE(src->next(e));
        CHECK(e.path == "./etc/");
    }

    TEST_CASE("tar source: compression is detected by content, not by name") {
        TempDir tmp;
        for (const auto f : {Filter::none, Filter::gzip, Filter::zstd, Filter::xz, Filter::bzip2}) {
            CAPTURE(static_cast<int>(f));
            const auto file = tmp / "misnamed.tar.gz"; // whatever it really is
            write_tar(file, {{.name = "a", .data = "x"}}, f);
            auto src = make_tar_source(file);
            std::vector<std::string> data;
            const auto es = read_entries(*src, &data);
            REQUIRE(es.size() == 1);
            CHECK(data[0] == "x");
        }
    }

    TEST_CASE("tar source: garbage, truncated archives and truncated streams name the file") {
        TempDir tmp;
        std::string big;
        for (int i = 0; i < 20000; i++)
            big += std::to_string(i * 7919 % 10007) + ",";
        SUBCASE("garbage") {
            const auto file = tmp / "garbage.tar.gz";
            spit(file, std::string(4000, 'x'));
            CHECK_THROWS_WITH_AS(make_tar_source(file),
                                 doctest::Contains((file.string() + ": not a tar archive").c_str()),
                                 Error);
        }
        SUBCASE("empty file") {
            const auto file = tmp / "empty.tar";
            spit(file, "");
            CHECK_THROWS_WITH_AS(make_tar_source(file), doctest::Contains("not a tar archive"),
                                 Error);
        }
        SUBCASE("truncated tar: the message names the entry") {
            const auto file = tmp / "t.tar";
            write_tar(file, {{.name = "first", .data = "1"}, {.name = "big", .data = big}});
            const std::string whole = slurp(file);
            spit(file, whole.substr(0, 3000));
            auto src = make_tar_source(file);
            std::vector<std::string> data;
            CHECK_THROWS_WITH_AS(
                read_entries(*src, &data),
                doctest::Contains(("can't read " + file.string() + ": entry 'big': ").c_str()),
                Error);
            // Skipping the data instead fails at the next header, naming the entry before it.
            auto again = make_tar_source(file);
            CHECK_THROWS_WITH_AS(
                read_entries(*again),
                doctest::Contains(
                    ("can't read " + file.string() + ": after entry 'big': ").c_str()),
                Error);
        }
        SUBCASE("truncated gzip stream") {
            const auto file = tmp / "t.tar.gz";
            std::string noise;
            for (int i = 0; i < 300000; i++)
                noise += static_cast<char>((i * 2654435761u) >> 24);
            write_tar(file, {{.name = "noise", .data = noise}}, Filter::gzip);
            const std::string whole = slurp(file);
            spit(file, whole.substr(0, whole.size() / 2));
            CHECK_THROWS_WITH_AS(
                {
                    auto src = make_tar_source(file);
                    read_entries(*src);
                },
                doctest::Contains(("can't read " + file.string()).c_str()), Error);
            try {
                auto src = make_tar_source(file);
                read_entries(*src);
            } catch (const Error& e) {
                CHECK(std::string(e.what()).find("truncated gzip input") != std::string::npos);
            }
        }
        SUBCASE("missing file") {
            CHECK_THROWS_WITH_AS(make_tar_source(tmp / "nope.tar"),
                                 doctest::Contains("No such file or directory"), SysError);
        }
    }

    TEST_CASE("tar sink: round trip through the tar source keeps everything") {
        TempDir tmp;
        std::vector<Extent> extents;
        const std::string sparse = sparse_content(1 << 20, extents);
        std::string sparse_data;
        for (const auto& x : extents)
            sparse_data += sparse.substr(x.offset, x.length);
        std::string longname;
        for (int i = 0; i < 30; i++)
            longname += std::string(150, static_cast<char>('a' + i)) + "/";
        longname += "leaf";

        Entry d{.path = "d", .type = T::dir, .mode = 0750, .mtime = 1600000000};
        Entry f{.path = "d/f",
                .type = T::file,
                .mode = 0640,
                .mtime = 1600000001,
                .size = 5,
                .xattrs = {{"user.k", std::string("v\0w", 3)}}};
        Entry s{.path = "d/sparse",
                .type = T::file,
                .mode = 0600,
                .size = sparse.size(),
                .sparse = extents};
        Entry l{.path = "d/l", .type = T::symlink, .mode = 0777, .link_target = "/abs/target"};
        Entry h{.path = "d/h", .type = T::hardlink, .link_target = "d/f"};
        Entry n{.path = longname, .type = T::file, .size = 2};
        ListSource list({d, f, s, l, h, n}, {"", "hello", sparse_data, "", "", "ok"});

        for (const char* name : {"out.tar", "out.tar.gz", "out.tgz", "out.tar.zst", "out.tar.xz"}) {
            CAPTURE(name);
            const auto file = tmp / name;
            {
                auto sink = make_tar_sink(file);
                list.rewind();
                Entry e;
                while (list.next(e))
                    sink->add(e, list);
                sink->commit();
            }
            auto src = make_tar_source(file);
            std::vector<std::string> data;
            const auto es = read_entries(*src, &data);
            REQUIRE(es.size() == 6);
            CHECK(es[0].type == T::dir);
            CHECK(es[0].mode == 0750);
            CHECK(es[0].mtime == 1600000000);
            CHECK(es[0].uid == 0);
            CHECK(data[1] == "hello");
            REQUIRE(es[1].xattrs.size() == 1);
            CHECK(es[1].xattrs[0].value == std::string("v\0w", 3));
            CHECK(es[2].size == sparse.size());
            REQUIRE(es[2].sparse);
            REQUIRE(es[2].sparse->size() == 2);
            CHECK((*es[2].sparse)[1].offset == extents[1].offset);
            CHECK(data[2] == sparse_data);
            CHECK(es[3].link_target == "/abs/target");
            CHECK(es[4].type == T::hardlink);
            CHECK(es[4].link_target == "d/f");
            CHECK(es[5].path == longname);
            CHECK(data[5] == "ok");
        }
        // Compressed outputs really are compressed (gzip and zstd magic).
        CHECK(slurp(tmp / "out.tar.gz").substr(0, 2) == "\x1f\x8b");
        CHECK(slurp(tmp / "out.tar.zst").substr(0, 4) == "\x28\xb5\x2f\xfd");
    }

    TEST_CASE("tar sink: the output name decides compression; others are refused") {
        TempDir tmp;
        CHECK(tar_compression_for("a.tar") == TarCompression::none);
        CHECK(tar_compression_for("a.tgz") == TarCompression::gzip);
        CHECK(tar_compression_for("a.tar.zst") == TarCompression::zstd);
        CHECK_FALSE(tar_compression_for("a.tar.bz2"));
        CHECK_THROWS_WITH_AS(make_tar_sink(tmp / "a.tar.bz2"),
                             doctest::Contains("the name must match one of *.tar, *.tar.gz"),
                             UsageError);
        CHECK(fs::is_empty(tmp.path()));
    }

    TEST_CASE("tar sink: nothing is left behind without commit, nothing but the output with it") {
        TempDir tmp;
        ListSource list({Entry{.path = "f", .size = 1}}, {"x"});
        {
            auto sink = make_tar_sink(tmp / "out.tar");
            Entry e;
            list.next(e);
            sink->add(e, list);
            CHECK_FALSE(fs::is_empty(tmp.path())); // the staging file
        }
        CHECK(fs::is_empty(tmp.path()));
        {
            auto sink = make_tar_sink(tmp / "out.tar");
            sink->commit();
        }
        std::vector<std::string> names;
        for (const auto& d : fs::directory_iterator(tmp.path()))
            names.push_back(d.path().filename().string());
        CHECK(names == std::vector<std::string>{"out.tar"});
    }

    TEST_CASE("tar sink: a file whose source ends early is an error") {
        TempDir tmp;
        ListSource list({Entry{.path = "f", .size = 10}}, {"short"});
        auto sink = make_tar_sink(tmp / "out.tar");
        Entry e;
        list.next(e);
        CHECK_THROWS_WITH_AS(sink->add(e, list), doctest::Contains("ended 5 bytes early"), Error);
    }

    TEST_CASE("tar source: stops reading extended attributes at the limits, naming the entry") {
        TempDir tmp;
        std::vector<Xattr> many;
        for (int i = 0; i < 1025; i++)
            many.push_back({cat("user.", i), ""});
        write_tar(tmp / "many.tar", {{.name = "ok"}, {.name = "f", .xattrs = many}});
        auto src = make_tar_source(tmp / "many.tar");
        Entry e;
        CHECK(src->next(e));
        CHECK_THROWS_WITH_AS(src->next(e),
                             ("can't read " + (tmp / "many.tar").string() +
                              ": entry 'f': more than 1024 extended attributes")
                                 .c_str(),
                             Error);
        write_tar(tmp / "big.tar", {{.name = "f",
                                     .xattrs = {{"user.a", std::string(40000, 'a')},
                                                {"user.b", std::string(40000, 'b')}}}});
        auto big = make_tar_source(tmp / "big.tar");
        CHECK_THROWS_WITH_AS(
            big->next(e),
            doctest::Contains("entry 'f': extended attributes take more than 65536 bytes"), Error);
    }

    TEST_CASE("pump: a tarbomb is probed, the source rewound, and unpacked without its wrapper") {
        TempDir tmp;
        const auto tar = tmp / "bomb.tar.gz";
        write_tar(tar,
                  {{.name = "img/", .type = T::dir, .mode = 0755},
                   {.name = "img/bin/sh", .data = "#!"},
                   {.name = "img/etc/hosts", .data = "127.0.0.1 x\n"}},
                  Filter::gzip);
        auto src = make_tar_source(tar);
        TarbombProbe probe;
        probe_tarbomb(*src, probe);
        REQUIRE(probe.wrapper() == std::optional<std::string>("img"));
        UnpackRules rules({.keep_xattrs = true, .strip_top = "img"});
        auto sink = make_dir_sink(tmp / "out");
        const PumpStats stats = pump(*src, *sink, rules, "out");
        CHECK(stats.entries == 3);
        CHECK(stats.bytes == 14);
        CHECK(stats.newest_mtime == 1700000000);
        pump_init(*sink, rules, stats.newest_mtime, "out");
        sink->commit();
        CHECK(slurp(tmp / "out" / "bin" / "sh") == "#!");
        CHECK(slurp(tmp / "out" / "etc" / "hosts") == "127.0.0.1 x\n"); // kept, not replaced
        CHECK(fs::is_empty(tmp / "out" / "etc" / "resolv.conf"));
        CHECK(fs::is_directory(tmp / "out" / "mnt" / "9"));
        CHECK_FALSE(fs::exists(tmp / "out" / "img"));

        struct stat st {};

        REQUIRE(::stat((tmp / "out" / "dev").c_str(), &st) == 0);
        CHECK(st.st_mtime == 1700000000);
    }

} // TEST_SUITE

// unpack_rules_test.cc: the unpacking rules, entry by entry, including the
// hostile cases (each one is a way an archive could write outside the image
// or smuggle in something an image must not hold).
#include <optional>

#include <doctest/doctest.h>

#include "image/unpack_rules.hh"
#include "util/error.hh"
#include "util/strings.hh"

using namespace ch;
using namespace ch::image;

namespace {

Entry make(std::string path, EntryType type = EntryType::file, mode_t mode = 0644) {
    Entry e;
    e.path = std::move(path);
    e.type = type;
    e.mode = mode;
    return e;
}

Entry dir(std::string path, mode_t mode = 0755) {
    return make(std::move(path), EntryType::dir, mode);
}

Entry slink(std::string path, std::string target) {
    Entry e = make(std::move(path), EntryType::symlink, 0777);
    e.link_target = std::move(target);
    return e;
}

Entry hlink(std::string path, std::string target) {
    Entry e = make(std::move(path), EntryType::hardlink);
    e.link_target = std::move(target);
    return e;
}

// "path:type" for each entry, to compare whole outputs at once.
std::vector<std::string> summary(const std::vector<Entry>& es) {
    std::vector<std::string> out;
    for (const auto& e : es)
        out.push_back(e.path + ":" + type_name(e.type));
    return out;
}

using Strings = std::vector<std::string>;

} // namespace

TEST_SUITE("image/unpack_rules") {

    TEST_CASE("unpack: normalises names: leading / and ./, empty and . components") {
        UnpackRules r;
        CHECK(summary(r.apply(dir("./"))) == Strings{":directory"});
        CHECK(summary(r.apply(dir("./etc/"))) == Strings{"etc:directory"});
        CHECK(summary(r.apply(make("/etc//./passwd"))) == Strings{"etc/passwd:file"});
        CHECK(summary(r.apply(make(".//etc/./group"))) == Strings{"etc/group:file"});
        CHECK(r.stats().absolute == 1);
        REQUIRE(r.warnings().size() == 1);
        CHECK(r.warnings()[0].find("absolute") != std::string::npos);
    }

    TEST_CASE("unpack: rejects an entry that climbs out with ..") {
        for (const char* name : {"../x", "etc/../../x", "a/..", "/../etc/passwd", "a/b/../c"}) {
            UnpackRules r;
            CAPTURE(name);
            CHECK_THROWS_WITH_AS(
                r.apply(make(name)),
                (std::string("entry '") + name + "': path leaves the image").c_str(), Error);
        }
    }

    TEST_CASE("unpack: names are printed escaped in errors") {
        UnpackRules r;
        CHECK_THROWS_WITH_AS(r.apply(make("a\n\x1b[31m/../../x")),
                             "entry 'a\\n\\x1b[31m/../../x': path leaves the image", Error);
    }

    TEST_CASE("unpack: implied parent directories come first") {
        UnpackRules r;
        const auto out = r.apply(make("a/b/c"));
        CHECK(summary(out) == Strings{"a:directory", "a/b:directory", "a/b/c:file"});
        CHECK(out[0].mode == 0755);
        CHECK(r.stats().parents_made == 2);
        // Now they exist: nothing more is implied.
        CHECK(summary(r.apply(make("a/b/d"))) == Strings{"a/b/d:file"});
    }

    TEST_CASE("unpack: a symlinked parent is resolved inside the image (merged /usr)") {
        UnpackRules r;
        r.apply(dir("usr"));
        r.apply(dir("usr/lib"));
        r.apply(slink("lib", "usr/lib"));
        r.begin_layer();
        const auto out = r.apply(make("lib/x.so"));
        CHECK(summary(out) == Strings{"usr/lib/x.so:file"});
        CHECK(r.stats().redirected == 1);
    }

    TEST_CASE("unpack: absolute symlink targets restart at the image root, not the host's") {
        UnpackRules r;
        r.apply(slink("etc", "/tmp/evil")); // on the host this would be /tmp/evil
        CHECK(summary(r.apply(make("etc/passwd"))) ==
              Strings{"tmp:directory", "tmp/evil:directory", "tmp/evil/passwd:file"});
    }

    TEST_CASE("unpack: .. in a symlink target stops at the image root") {
        UnpackRules r;
        r.apply(dir("a"));
        r.apply(slink("a/up", "../../../../../etc"));
        CHECK(summary(r.apply(make("a/up/shadow"))) == Strings{"etc:directory", "etc/shadow:file"});
    }

    TEST_CASE("unpack: chains of symlinks resolve, loops fail") {
        UnpackRules r;
        r.apply(dir("real"));
        r.apply(slink("l1", "l2"));
        r.apply(slink("l2", "/l3"));
        r.apply(slink("l3", "./real/"));
        CHECK(summary(r.apply(make("l1/f"))) == Strings{"real/f:file"});
        r.apply(slink("loop1", "loop2"));
        r.apply(slink("loop2", "loop1"));
        CHECK_THROWS_WITH_AS(r.apply(make("loop1/f")),
                             "entry 'loop1/f': too many levels of symbolic links", Error);
    }

    TEST_CASE("unpack: a parent that is a file is an error") {
        UnpackRules r;
        r.apply(make("f"));
        CHECK_THROWS_WITH_AS(r.apply(make("f/g")), "entry 'f/g': parent 'f' is not a directory",
                             Error);
    }

    TEST_CASE("unpack: the last component is never followed: an entry replaces a symlink") {
        UnpackRules r;
        r.apply(dir("target"));
        r.apply(slink("link", "target"));
        CHECK(summary(r.apply(make("link"))) == Strings{"link:file"});
        // link is now a file, so nothing goes through it any more
        CHECK_THROWS_AS(r.apply(make("link/x")), Error);
        r.apply(slink("l2", "target"));
        CHECK(summary(r.apply(dir("l2"))) == Strings{"l2:directory"});
        CHECK(summary(r.apply(make("l2/x"))) == Strings{"l2/x:file"});
    }

    TEST_CASE("unpack: symlinks are kept verbatim; an empty target is an error") {
        UnpackRules r;
        const auto out = r.apply(slink("a", "/etc/../../host"));
        REQUIRE(out.size() == 1);
        CHECK(out[0].link_target == "/etc/../../host");
        CHECK_THROWS_WITH_AS(r.apply(slink("b", "")), "entry 'b': symlink has an empty target",
                             Error);
    }

    TEST_CASE("unpack: hard links must name an earlier non-directory entry") {
        UnpackRules r;
        r.apply(dir("etc"));
        r.apply(make("etc/f"));
        SUBCASE("earlier file: ok, target normalised") {
            const auto out = r.apply(hlink("g", "/./etc/f"));
            REQUIRE(out.size() == 1);
            CHECK(out[0].type == EntryType::hardlink);
            CHECK(out[0].link_target == "etc/f");
        }
        SUBCASE("a host file that is not in the image") {
            CHECK_THROWS_WITH_AS(
                r.apply(hlink("p", "/etc/passwd")),
                "entry 'p': hard link target '/etc/passwd' is not an earlier entry of the image",
                Error);
        }
        SUBCASE("climbing out") {
            CHECK_THROWS_WITH_AS(r.apply(hlink("p", "../../etc/passwd")),
                                 "entry 'p': hard link target '../../etc/passwd' leaves the image",
                                 Error);
        }
        SUBCASE("a later entry") {
            CHECK_THROWS_WITH_AS(
                r.apply(hlink("p", "later")),
                "entry 'p': hard link target 'later' is not an earlier entry of the image", Error);
        }
        SUBCASE("a directory") {
            CHECK_THROWS_WITH_AS(r.apply(hlink("p", "etc")),
                                 "entry 'p': hard link target 'etc' is a directory", Error);
        }
        SUBCASE("itself") {
            CHECK_THROWS_WITH_AS(r.apply(hlink("etc/f", "etc/f")),
                                 "entry 'etc/f': hard link to itself", Error);
        }
        SUBCASE("inside the path it replaces") {
            CHECK_THROWS_AS(r.apply(hlink("etc", "etc/f")), Error);
        }
        SUBCASE("through a symlinked parent, resolved in the image") {
            r.apply(slink("e", "/etc"));
            const auto out = r.apply(hlink("g", "e/f"));
            CHECK(out.at(0).link_target == "etc/f");
        }
        SUBCASE("a hard link to a hard link is a link to the file") {
            r.apply(hlink("g", "etc/f"));
            const auto out = r.apply(hlink("h", "g"));
            CHECK(out.at(0).link_target == "g");
            CHECK_THROWS_AS(r.apply(make("g/x")), Error); // g is a file in the model
        }
    }

    TEST_CASE("unpack: device nodes, FIFOs and sockets are dropped and counted") {
        UnpackRules r;
        CHECK(r.apply(make("dev/null", EntryType::chardev)).empty());
        CHECK(r.apply(make("dev/sda", EntryType::blockdev)).empty());
        CHECK(r.apply(make("fifo", EntryType::fifo)).empty());
        CHECK(r.apply(make("sock", EntryType::socket)).empty());
        CHECK(r.stats().specials == 4);
        REQUIRE(r.warnings().size() == 1);
        CHECK(r.warnings()[0] ==
              "dropped 4 device file(s), FIFO(s) or socket(s): not allowed in images");
        // Dropping validates the name first.
        CHECK_THROWS_AS(r.apply(make("../dev/x", EntryType::chardev)), Error);
    }

    TEST_CASE("unpack: permissions and owners are sanitised") {
        UnpackRules r;
        Entry f = make("suid", EntryType::file, 04755);
        f.uid = 1000;
        f.gid = 1000;
        auto out = r.apply(f);
        CHECK(out.at(0).mode == 0755);
        CHECK(out.at(0).uid == 0);
        CHECK(out.at(0).gid == 0);
        CHECK(r.apply(make("sgid", EntryType::file, 02711)).at(0).mode == 0711);
        CHECK(r.apply(make("sticky", EntryType::file, 01644)).at(0).mode == 0644);
        CHECK(r.apply(make("ro", EntryType::file, 0000)).at(0).mode == 0600);
        CHECK(r.apply(dir("d", 02555)).at(0).mode == 0755);
        CHECK(r.apply(dir("tmp", 01777)).at(0).mode == 01777);
        CHECK(r.apply(dir("locked", 0)).at(0).mode == 0700);
        CHECK(r.stats().setid_stripped == 3);
    }

    TEST_CASE("unpack: only user.* xattrs are kept, and none without keep_xattrs") {
        Entry f = make("f");
        f.xattrs = {
            {"user.a", "1"}, {"security.capability", "x"}, {"trusted.b", "2"}, {"user.c", ""}};
        UnpackRules r;
        const auto out = r.apply(f);
        REQUIRE(out.at(0).xattrs.size() == 2);
        CHECK(out[0].xattrs[0].name == "user.a");
        CHECK(out[0].xattrs[1].name == "user.c");
        CHECK(r.stats().xattrs_dropped == 2);
        UnpackRules none({.keep_xattrs = false, .strip_top = ""});
        CHECK(none.apply(f).at(0).xattrs.empty());
    }

    TEST_CASE("unpack: sparse maps are checked") {
        UnpackRules r;
        Entry f = make("s");
        f.size = 100;
        f.sparse = std::vector<Extent>{{0, 10}, {50, 0}, {60, 40}};
        const auto out = r.apply(f);
        REQUIRE(out.at(0).sparse);
        CHECK(out[0].sparse->size() == 2); // the empty extent is gone
        CHECK(out[0].data_size() == 50);
        f.sparse = std::vector<Extent>{{0, 10}, {5, 10}};
        CHECK_THROWS_AS(r.apply(f), Error);
        f.sparse = std::vector<Extent>{{90, 20}};
        CHECK_THROWS_AS(r.apply(f), Error);
        f.size = 4 << 20;
        f.sparse = std::vector<Extent>((1 << 20) + 1);
        for (std::size_t i = 0; i < f.sparse->size(); i++)
            (*f.sparse)[i] = {2 * i, 1};
        CHECK_THROWS_WITH_AS(r.apply(f), "entry 's': sparse map of more than 1048576 regions",
                             Error);
    }

    TEST_CASE("unpack: the root must be a directory") {
        UnpackRules r;
        CHECK_THROWS_WITH_AS(r.apply(slink("./", "/")),
                             "entry './': the image root must be a directory, not a symlink",
                             Error);
    }

    TEST_CASE("unpack: duplicates: a later entry replaces an earlier one") {
        UnpackRules r;
        r.apply(dir("d", 0755));
        r.apply(make("d/f"));
        SUBCASE("directory over directory merges and updates the mode") {
            const auto out = r.apply(dir("d", 0700));
            CHECK(out.at(0).mode == 0700);
            CHECK(r.apply(hlink("h", "d/f")).size() == 1); // d/f survived the merge
        }
        SUBCASE("a file replaces a directory and what was under it") {
            CHECK(summary(r.apply(make("d"))) == Strings{"d:file"});
            CHECK_THROWS_AS(r.apply(hlink("h", "d/f")), Error);
        }
        SUBCASE("a file replaces a file") {
            CHECK(summary(r.apply(make("d/f", EntryType::file, 0600))) == Strings{"d/f:file"});
        }
    }

    TEST_CASE("unpack: whiteouts in a single archive remove nothing") {
        UnpackRules r;
        r.apply(dir("etc"));
        r.apply(make("etc/f"));
        CHECK(r.apply(make("etc/.wh.f")).empty());
        CHECK(r.apply(make("etc/.wh..wh..opq")).empty());
        CHECK(r.apply(make(".wh.missing")).empty());
        CHECK(r.stats().whiteout_markers == 3);
        CHECK(r.stats().whiteouts == 0);
        // etc/f is still there: a hard link to it works.
        CHECK(r.apply(hlink("g", "etc/f")).size() == 1);
    }

    TEST_CASE("unpack: a whiteout hides an entry of an earlier layer") {
        UnpackRules r;
        r.apply(dir("etc"));
        r.apply(make("etc/f"));
        r.apply(dir("etc/sub"));
        r.apply(make("etc/sub/g"));
        r.begin_layer();
        CHECK(summary(r.apply(make("etc/.wh.f"))) == Strings{"etc/f:whiteout"});
        CHECK(summary(r.apply(make("etc/.wh.sub"))) == Strings{"etc/sub:whiteout"});
        CHECK(r.apply(make("etc/.wh.f")).empty()); // already gone
        CHECK_THROWS_AS(r.apply(hlink("h", "etc/f")), Error);
        CHECK(r.stats().whiteouts == 2);
    }

    TEST_CASE("unpack: a whiteout never hides an entry of its own layer") {
        UnpackRules r;
        r.apply(make("old"));
        r.begin_layer();
        r.apply(make("new"));
        CHECK(r.apply(make(".wh.new")).empty());
        // The same layer replaced "old": the whiteout no longer hides it.
        r.apply(make("old"));
        CHECK(r.apply(make(".wh.old")).empty());
    }

    TEST_CASE(
        "unpack: a whiteout of a directory re-declared in this layer hides only older children") {
        UnpackRules r;
        r.apply(dir("d"));
        r.apply(make("d/old"));
        r.begin_layer();
        r.apply(dir("d"));
        r.apply(make("d/new"));
        CHECK(summary(r.apply(make(".wh.d"))) == Strings{"d/old:whiteout"});
    }

    TEST_CASE("unpack: an opaque directory hides every older child, whatever the order") {
        UnpackRules r;
        r.apply(dir("d"));
        r.apply(make("d/a"));
        r.apply(make("d/b"));
        r.apply(dir("d/sub"));
        r.apply(make("d/sub/c"));
        r.apply(make("keep"));
        r.begin_layer();
        r.apply(make("d/b"));  // rewritten in this layer before the marker: stays
        r.apply(dir("d/sub")); // re-declared: stays, but its old child goes
        CHECK(summary(r.apply(make("d/.wh..wh..opq"))) ==
              Strings{"d/a:whiteout", "d/sub/c:whiteout"});
        r.apply(make("d/z")); // after the marker: a new child, unaffected
        CHECK(r.apply(make("d/.wh..wh..opq")).empty());
        CHECK(r.stats().whiteouts == 2);
    }

    TEST_CASE("unpack: whiteouts resolve symlinked parents like other entries") {
        UnpackRules r;
        r.apply(dir("usr/lib"));
        r.apply(make("usr/lib/x.so"));
        r.apply(slink("lib", "usr/lib"));
        r.begin_layer();
        CHECK(summary(r.apply(make("lib/.wh.x.so"))) == Strings{"usr/lib/x.so:whiteout"});
    }

    TEST_CASE("unpack: a whiteout entry from a source names its victim directly") {
        UnpackRules r;
        r.apply(dir("d"));
        r.apply(make("d/x"));
        r.begin_layer();
        CHECK(summary(r.apply(make("d/x", EntryType::whiteout))) == Strings{"d/x:whiteout"});
        CHECK(r.apply(make("d/x", EntryType::whiteout)).empty());
    }

    TEST_CASE("unpack: bad whiteout names") {
        UnpackRules r;
        CHECK_THROWS_WITH_AS(r.apply(make("a/.wh.")), "entry 'a/.wh.': whiteout names no entry",
                             Error);
        CHECK(r.apply(make(".wh..wh.plnk")).empty()); // AUFS metadata: dropped
    }

    TEST_CASE("unpack: names up to 4096 bytes and with control characters are fine") {
        UnpackRules r;
        std::string longname;
        for (int i = 0; i < 19; i++)
            longname += std::string(200, static_cast<char>('a' + i % 26)) + "/";
        longname += std::string(255, 'y') + "/";
        longname += std::string(4096 - longname.size(), 'z');
        REQUIRE(longname.size() == 4096);
        const auto out = r.apply(make("/./" + longname));
        CHECK(out.size() == 21);
        CHECK(out.back().path == longname);
        CHECK_THROWS_WITH_AS(
            r.apply(make("d/" + std::string(256, 'n'))),
            doctest::Contains("(258 bytes): path is made of a name longer than 255 bytes"), Error);
        CHECK(r.apply(make("new\nline")).at(0).path == "new\nline");
    }

    TEST_CASE("unpack: a too long or deep path is refused, its name shortened in the message") {
        UnpackRules r;
        std::string deep;
        for (int i = 0; i < 20000; i++)
            deep += "a/";
        deep += "f";
        // (1025 components come before 4097 bytes)
        CHECK_THROWS_WITH_AS(r.apply(make(deep)),
                             ("entry '" + deep.substr(0, 80) + "..." +
                              deep.substr(deep.size() - 80) +
                              "' (40001 bytes): path is more than 1024 components deep")
                                 .c_str(),
                             Error);
        // Normalisation comes first: what counts is the path as it will be written.
        CHECK(r.apply(make(std::string(5000, '/') + "x")).at(0).path == "x");
        std::string over;
        while (over.size() < 4097)
            over += std::string(200, 'x') + "/";
        CHECK_THROWS_WITH_AS(r.apply(make(over)),
                             doctest::Contains("(4221 bytes): path is longer than 4096 bytes"),
                             Error);
        CHECK(r.stats().parents_made == 0); // nothing was made for the refused entries
    }

    TEST_CASE("unpack: a path more than 1024 components deep is refused") {
        UnpackRules r;
        std::string path;
        for (int i = 0; i < 1024; i++)
            path += (i == 0 ? "" : "/") + std::string(1, 'a');
        CHECK(r.apply(make(path)).size() == 1024); // 1023 parents and the file
        CHECK_THROWS_WITH_AS(r.apply(make("b/" + path)),
                             doctest::Contains("path is more than 1024 components deep"), Error);
    }

    TEST_CASE("unpack: symlinks can't stretch a path past the limits") {
        UnpackRules r;
        std::string long_dir;
        for (int i = 0; i < 20; i++)
            long_dir += (i == 0 ? "" : "/") + std::string(199, 'd');
        REQUIRE(long_dir.size() == 3999);
        r.apply(dir(long_dir));
        r.apply(slink("l", long_dir));
        CHECK(r.apply(make("l/" + std::string(96, 'f'))).at(0).path ==
              long_dir + "/" + std::string(96, 'f'));
        CHECK_THROWS_WITH_AS(
            r.apply(make("l/" + std::string(97, 'f'))),
            doctest::Contains("path resolves (through symlinks) to one longer than 4096 bytes"),
            Error);
        // a -> b/b/.../b (600 deep); a/a would be 1200 components deep
        std::string b;
        for (int i = 0; i < 600; i++)
            b += "b/";
        r.apply(make(b + "x"));
        r.apply(slink("a", b));
        r.apply(slink(b + "a", b));
        CHECK_THROWS_WITH_AS(
            r.apply(make("a/a/f")),
            doctest::Contains(
                "path resolves (through symlinks) to one more than 1024 components deep"),
            Error);
        CHECK_THROWS_WITH_AS(r.apply(slink("s", std::string(4097, 't'))),
                             "entry 's': symlink target is longer than 4096 bytes", Error);
    }

    TEST_CASE("unpack: extended attributes are limited to 64 KiB and 1024 per entry") {
        UnpackRules r;
        Entry f = make("f");
        f.xattrs = {{"user.big", std::string(64 * 1024 - 8, 'v')}};
        CHECK(r.apply(f).at(0).xattrs.size() == 1);
        f.xattrs[0].value += "v";
        CHECK_THROWS_WITH_AS(
            r.apply(f),
            "entry 'f': extended attributes take more than 65536 bytes (names and values)", Error);
        f.xattrs.clear();
        for (int i = 0; i < 1025; i++)
            f.xattrs.push_back({cat("user.", i), ""});
        CHECK_THROWS_WITH_AS(r.apply(f), "entry 'f': more than 1024 extended attributes", Error);
        // Dropped ones count too: the limit is on what the archive holds.
        f.xattrs = {{"trusted.x", std::string(70000, 'v')}};
        CHECK_THROWS_AS(r.apply(f), Error);
    }

    TEST_CASE("unpack: user.overlay.* attributes are dropped") {
        UnpackRules r;
        Entry d = dir("d");
        d.xattrs = {
            {"user.overlay.opaque", "y"}, {"user.overlay.redirect", "/x"}, {"user.keep", "1"}};
        const auto out = r.apply(d);
        REQUIRE(out.at(0).xattrs.size() == 1);
        CHECK(out[0].xattrs[0].name == "user.keep");
        CHECK(r.stats().xattrs_dropped == 2);
    }

    TEST_CASE("unpack: deep trees are freed and whited out without recursion") {
        // Over the limit in depth is impossible, so go wide and deep at once:
        // 1000 levels, each with a file, hidden by one opaque whiteout.
        UnpackRules r;
        std::string path;
        for (int i = 0; i < 1000; i++) {
            path += (path.empty() ? "" : "/") + std::string("d");
            r.apply(make(path + "/f"));
        }
        r.begin_layer();
        const auto out = r.apply(make(".wh..wh..opq"));
        CHECK(summary(out) == Strings{"d:whiteout"});
        CHECK(r.stats().whiteouts == 1);
        r.apply(dir("d"));
        r.apply(make(path + "/g")); // d is of this layer now: what was under it is gone
        r.begin_layer();
        CHECK(r.apply(make("d/.wh.d")).size() == 1);
    }

    TEST_CASE("unpack: a tarbomb's wrapping directory is found and stripped") {
        SUBCASE("one top-level directory, not part of an image: stripped") {
            TarbombProbe p;
            CHECK(p.add(dir("./")));
            CHECK(p.add(dir("./img/")));
            CHECK(p.add(make("img/bin/true")));
            CHECK(p.add(slink("img/lib", "usr/lib")));
            REQUIRE(p.wrapper());
            CHECK(*p.wrapper() == "img");
            UnpackRules r({.keep_xattrs = true, .strip_top = *p.wrapper()});
            CHECK(summary(r.apply(dir("./img/"))) == Strings{":directory"});
            CHECK(summary(r.apply(make("img/bin/true"))) ==
                  Strings{"bin:directory", "bin/true:file"});
            CHECK(r.apply(hlink("img/bin/false", "img/bin/true")).at(0).link_target == "bin/true");
            CHECK(r.apply(slink("img/lib", "/img/usr/lib")).at(0).link_target ==
                  "/img/usr/lib"); // verbatim
            CHECK_THROWS_WITH_AS(r.apply(make("other")),
                                 doctest::Contains("entry 'other': not under 'img'"), Error);
            std::vector<Entry> made;
            r.init_image(made, 0);    // not stripped, and not refused for it
            CHECK(made.size() == 20); // all but bin
        }
        SUBCASE("files without a directory entry for the wrapper") {
            TarbombProbe p;
            CHECK(p.add(make("w/a")));
            CHECK(p.add(make("w/b/c")));
            CHECK(p.wrapper() == std::optional<std::string>("w"));
        }
        SUBCASE("an image's own directories are never stripped") {
            for (const char* top : {"bin", "dev", "etc", "mnt", "proc", "sys", "tmp", "usr"}) {
                TarbombProbe p;
                CHECK_FALSE(p.add(make(cat(top, "/x"))));
                CHECK_FALSE(p.wrapper());
            }
        }
        SUBCASE("two top-level names, or a top-level file: no wrapper, and the probe stops") {
            TarbombProbe p;
            CHECK(p.add(make("img/a")));
            CHECK_FALSE(p.add(make("other/b")));
            CHECK_FALSE(p.add(make("img/c")));
            CHECK_FALSE(p.wrapper());
            TarbombProbe q;
            CHECK_FALSE(q.add(make("README")));
            CHECK_FALSE(q.wrapper());
            TarbombProbe empty;
            CHECK_FALSE(empty.wrapper());
        }
    }

    TEST_CASE("unpack: init_image adds what ch-run needs, only where nothing is") {
        UnpackRules r;
        r.apply(dir("bin"));
        r.apply(slink("etc",
                      "private/etc")); // a symlink counts as there, and is followed for etc/hosts
        r.apply(make("mnt/3"));        // a file at a mount point stays
        r.apply(make("private/etc/resolv.conf"));
        std::vector<Entry> out;
        r.init_image(out, 1234);
        CHECK(summary(out) == Strings{"dev:directory", "proc:directory", "sys:directory",
                                      "tmp:directory", "usr:directory", "mnt/0:directory",
                                      "mnt/1:directory", "mnt/2:directory", "mnt/4:directory",
                                      "mnt/5:directory", "mnt/6:directory", "mnt/7:directory",
                                      "mnt/8:directory", "mnt/9:directory", "ch:directory",
                                      "private/etc/hosts:file"});
        for (const auto& e : out) {
            CHECK(e.mtime == 1234);
            CHECK(e.mode == (e.type == EntryType::dir ? 0755 : 0644));
        }
        CHECK(r.stats().init_made == 16);
        std::vector<Entry> again;
        r.init_image(again, 1234);
        CHECK(again.empty());
    }

    TEST_CASE("unpack: init_image skips a name whose parent is not a directory") {
        UnpackRules r;
        r.apply(make("etc"));
        r.apply(slink("mnt", "/nowhere"));
        std::vector<Entry> out;
        r.init_image(out, 0);
        for (const auto& e : out) {
            CHECK_FALSE(e.path.starts_with("etc/"));
            CHECK_FALSE(e.path.starts_with("mnt/"));
            CHECK_FALSE(e.path.starts_with("nowhere"));
        }
        CHECK(out.size() == 7); // bin dev proc sys tmp usr ch
    }

} // TEST_SUITE

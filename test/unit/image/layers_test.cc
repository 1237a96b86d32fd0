// layers_test.cc: an image's layers unpacked in order (whiteouts, opaque
// directories, files re-created after their whiteout, hard links across
// layers, hostile names), both layer by layer into a directory and as the
// one merged stream that straight-to-file pulls use: the two must leave the
// same tree.
#include <algorithm>
#include <map>

#include <doctest/doctest.h>

#include "fixtures.hh"
#include "image/formats.hh"
#include "image/squash.hh"
#include "image/unpack_image.hh"
#include "util/error.hh"

using namespace ch;
using namespace ch::image;
using ch::test::TarSpec;
using ch::test::TempDir;

namespace {

using T = EntryType;

std::vector<LayerFile> write_layers(const TempDir& tmp,
                                    const std::vector<std::vector<TarSpec>>& layers) {
    std::vector<LayerFile> out;
    for (std::size_t i = 0; i < layers.size(); i++) {
        const auto p = tmp / cat("layer", i, ".tar.gz");
        test::write_tar(p, layers[i], i % 2 == 0 ? test::Filter::gzip : test::Filter::zstd);
        out.push_back({p, cat("sha256:", std::string(64, static_cast<char>('a' + i)))});
    }
    return out;
}

// "path type [mode] [content|target]" for every entry under root, sorted;
// ch/ and what unpack_init makes are left out unless keep_own.
std::vector<std::string> tree(const fs::path& root, bool keep_own = false) {
    std::vector<std::string> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        const std::string rel = it->path().lexically_relative(root).string();
        const std::string top = rel.substr(0, rel.find('/'));
        if (!keep_own && (top == "ch" || top == "mnt" || top == "proc" || top == "sys" ||
                          top == "dev" || top == "tmp" || top == "bin" || top == "usr" ||
                          rel == "etc" || rel == "etc/hosts" || rel == "etc/resolv.conf"))
            continue;

        struct stat st {};

        REQUIRE(::lstat(it->path().c_str(), &st) == 0);
        std::string line = rel;
        if (S_ISDIR(st.st_mode))
            line += cat(" dir ", st.st_mode & 07777);
        else if (S_ISLNK(st.st_mode))
            line += " -> " + fs::read_symlink(it->path()).string();
        else
            line += cat(" file ", st.st_mode & 07777, " '", test::slurp(it->path()), "' links ",
                        st.st_nlink);
        out.push_back(line);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> unpack_to_dir(const std::vector<LayerFile>& layers, const fs::path& dest,
                                       bool merged) {
    UnpackImageRequest req;
    req.layers = layers;
    req.meta.env = {"PATH=/usr/bin:/bin", "A=1"};
    req.merged = merged;
    auto sink = make_dir_sink(dest);
    unpack_image(req, *sink, dest.string());
    sink->commit();
    return tree(dest);
}

// Layer-by-layer and merged give this tree.
std::vector<std::string> both(const TempDir& tmp, const std::vector<std::vector<TarSpec>>& specs) {
    const auto layers = write_layers(tmp, specs);
    const auto by_layer = unpack_to_dir(layers, tmp / "by-layer", false);
    const auto merged = unpack_to_dir(layers, tmp / "merged", true);
    CHECK(by_layer == merged);
    return by_layer;
}

// Entry paths of the merged stream, in order.
std::vector<std::string> merged_paths(const std::vector<LayerFile>& layers) {
    auto src = make_layers_source(layers);
    std::vector<std::string> out;
    Entry e;
    while (src->next(e))
        out.push_back(e.path);
    return out;
}

using Strings = std::vector<std::string>;

} // namespace

TEST_SUITE("image/layers") {

    TEST_CASE("layers: whiteouts remove what earlier layers wrote, files and whole trees") {
        TempDir tmp;
        const auto t = both(tmp, {
                                     {{.name = "a/", .type = T::dir, .mode = 0755},
                                      {.name = "a/keep", .data = "k"},
                                      {.name = "a/gone", .data = "g"},
                                      {.name = "b/", .type = T::dir, .mode = 0755},
                                      {.name = "b/x", .data = "x"}},
                                     {{.name = "a/.wh.gone"}, {.name = ".wh.b"}},
                                 });
        CHECK(t == Strings{"a dir 493", "a/keep file 420 'k' links 1"});
    }

    TEST_CASE("layers: a whiteout hides only lower layers, not its own") {
        TempDir tmp;
        const auto t = both(tmp, {
                                     {{.name = "f", .data = "old"}},
                                     {{.name = "f", .data = "new"}, {.name = ".wh.f"}},
                                 });
        CHECK(t == Strings{"f file 420 'new' links 1"});
    }

    TEST_CASE("layers: a file re-created after its whiteout has the new content") {
        TempDir tmp;
        const auto t = both(tmp, {
                                     {{.name = "etc/", .type = T::dir, .mode = 0755},
                                      {.name = "etc/conf", .data = "one"}},
                                     {{.name = "etc/.wh.conf"}},
                                     {{.name = "etc/conf", .data = "three"}},
                                 });
        CHECK(std::find(t.begin(), t.end(), "etc/conf file 420 'three' links 1") != t.end());
    }

    TEST_CASE("layers: an opaque directory hides lower children, keeps its own") {
        TempDir tmp;
        const auto t = both(tmp, {
                                     {{.name = "etc/", .type = T::dir, .mode = 0755},
                                      {.name = "d/", .type = T::dir, .mode = 0755},
                                      {.name = "d/lower", .data = "l"},
                                      {.name = "d/sub/", .type = T::dir, .mode = 0755},
                                      {.name = "d/sub/deep", .data = "x"}},
                                     {{.name = "d/", .type = T::dir, .mode = 0750},
                                      {.name = "d/.wh..wh..opq"},
                                      {.name = "d/upper", .data = "u"}},
                                 });
        CHECK(t == Strings{"d dir 488", "d/upper file 420 'u' links 1"});
    }

    TEST_CASE("layers: a later file replaces a directory tree, a later directory a file") {
        TempDir tmp;
        const auto t =
            both(tmp, {
                          {{.name = "x/", .type = T::dir, .mode = 0755},
                           {.name = "x/in", .data = "i"},
                           {.name = "y", .data = "file"}},
                          {{.name = "x", .data = "now a file"},
                           {.name = "y/", .type = T::dir, .mode = 0700},
                           {.name = "y/z", .type = T::symlink, .mode = 0777, .link = "../x"}},
                      });
        CHECK(join(t, "|") == "x file 420 'now a file' links 1|y dir 448|y/z -> ../x");
    }

    TEST_CASE("layers: merged stream emits a directory once, with its last metadata") {
        TempDir tmp;
        const auto layers = write_layers(
            tmp, {
                     {{.name = "d/", .type = T::dir, .mode = 0700}, {.name = "d/a", .data = "a"}},
                     {{.name = "d/", .type = T::dir, .mode = 0755}, {.name = "d/b", .data = "b"}},
                 });
        CHECK(merged_paths(layers) == Strings{"d/", "d/a", "d/b"});
        auto src = make_layers_source(layers);
        Entry e;
        REQUIRE(src->next(e));
        CHECK(e.path == "d/");
        CHECK(e.mode == 0755);
    }

    TEST_CASE("layers: hard links across layers") {
        TempDir tmp;
        const auto t = both(tmp, {
                                     {{.name = "f", .data = "data"}},
                                     {{.name = "g", .type = T::hardlink, .link = "f"}},
                                 });
        CHECK(t == Strings{"f file 420 'data' links 2", "g file 420 'data' links 2"});
    }

    TEST_CASE("layers: a hard link whose target a later layer removes") {
        TempDir tmp;
        const auto layers = write_layers(tmp, {
                                                  {{.name = "f", .data = "data"},
                                                   {.name = "g", .type = T::hardlink, .link = "f"}},
                                                  {{.name = ".wh.f"}},
                                              });
        // Layer by layer, the link keeps the data ...
        CHECK(unpack_to_dir(layers, tmp / "by-layer", false) ==
              Strings{"g file 420 'data' links 1"});
        // ... one pass can't, and says so without leaving anything.
        CHECK_THROWS_WITH_AS(unpack_to_dir(layers, tmp / "merged", true),
                             doctest::Contains("a later layer removes its target"), Error);
        CHECK(!fs::exists(tmp / "merged"));
    }

    TEST_CASE("layers: hostile names in a later layer are refused, naming the layer") {
        TempDir tmp;
        for (const std::string bad : {"../escape", "a/../../x"}) {
            const auto layers =
                write_layers(tmp, {{{.name = "ok", .data = "1"}}, {{.name = bad, .data = "2"}}});
            for (const bool merged : {false, true}) {
                CAPTURE(bad);
                CAPTURE(merged);
                std::string msg;
                try {
                    unpack_to_dir(layers, tmp / "out", merged);
                } catch (const Error& e) {
                    msg = e.what();
                }
                CHECK(msg.find("path leaves the image") != std::string::npos);
                CHECK(msg.find("layer 2 of 2 (sha256:bbbbbbbbbbbb)") != std::string::npos);
                CHECK(!fs::exists(tmp / "out"));
            }
        }
        // A symlink planted by one layer does not let the next write through it.
        const auto layers =
            write_layers(tmp, {{{.name = "link", .type = T::symlink, .mode = 0777, .link = "/etc"}},
                               {{.name = "link/passwd", .data = "pwned"}}});
        const auto t = unpack_to_dir(layers, tmp / "sym", false);
        CHECK(test::slurp("/etc/passwd") != "pwned");
        CHECK(test::slurp(tmp / "sym/etc/passwd") == "pwned");
    }

    TEST_CASE("layers: metadata and environment are written into the image") {
        TempDir tmp;
        const auto layers = write_layers(tmp, {{{.name = "f", .data = "1", .mtime = 1600000000}}});
        UnpackImageRequest req;
        req.layers = layers;
        req.meta.env = {"Z=last", "PATH=/bin", "BAD", "A=1"};
        req.meta.config_digest = "sha256:cfg";
        auto sink = make_dir_sink(tmp / "img");
        const auto st = unpack_image(req, *sink, "img");
        sink->commit();
        CHECK(st.mtime == 1600000000);
        CHECK(test::slurp(tmp / "img/ch/environment") == "A=1\nPATH=/bin\nZ=last\n");
        const Metadata m =
            parse_metadata_json(test::slurp(tmp / "img/ch/metadata.json"), "metadata.json");
        CHECK(m.config_digest == "sha256:cfg");
        CHECK(fs::is_directory(tmp / "img/mnt/0"));

        struct stat s {};

        REQUIRE(::stat((tmp / "img/ch/environment").c_str(), &s) == 0);
        CHECK(s.st_mtime == 1600000000);
    }

    TEST_CASE("layers: straight to tar and SquashFS, the same layers give the same bytes") {
        TempDir tmp;
        const auto layers = write_layers(tmp, {
                                                  {{.name = "a/", .type = T::dir, .mode = 0755},
                                                   {.name = "a/f", .data = "1"},
                                                   {.name = "a/g", .data = "2"}},
                                                  {{.name = "a/.wh.f"}, {.name = "b", .data = "3"}},
                                              });
        UnpackImageRequest req;
        req.layers = layers;
        req.merged = true;
        for (const char* name : {"one", "two"}) {
            auto tar = make_tar_sink(tmp / cat(name, ".tar.gz"));
            unpack_image(req, *tar, name);
            tar->commit();
            auto sq = make_squash_sink(tmp / cat(name, ".sqfs"));
            unpack_image(req, *sq, name);
            sq->commit();
        }
        CHECK(test::slurp(tmp / "one.tar.gz") == test::slurp(tmp / "two.tar.gz"));
        CHECK(test::slurp(tmp / "one.sqfs") == test::slurp(tmp / "two.sqfs"));
        auto back = make_tar_source(tmp / "one.tar.gz");
        std::vector<std::string> names;
        Entry e;
        while (back->next(e))
            names.push_back(e.path);
        CHECK(std::find(names.begin(), names.end(), "a/f") == names.end());
        CHECK(std::find(names.begin(), names.end(), "a/g") != names.end());
        CHECK(std::find(names.begin(), names.end(), "ch/metadata.json") != names.end());
    }
}

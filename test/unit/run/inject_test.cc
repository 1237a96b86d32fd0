// inject_test.cc: --inject's pieces: the sets from the configuration, the
// libraries grouped by directory, the plan, the merged cache, and what is
// made in the overlay's upper layer.
#include <algorithm>

#include <fcntl.h>
#include <sys/stat.h>

#include <doctest/doctest.h>

#include "../image/fixtures.hh"
#include "image/ldso.hh"
#include "run/inject.hh"
#include "run/plan.hh"
#include "util/config.hh"
#include "util/error.hh"
#include "util/fd.hh"

using namespace ch;
using namespace ch::run;
using ch::test::spit;
using ch::test::TempDir;

namespace {

config::Config site(const TempDir& t, const std::string& yaml) {
    spit(t / "site.yaml", yaml);
    return config::Config::load_files((t / "site.yaml").string(), "");
}

std::string libz() {
    return fs::canonical("/lib/x86_64-linux-gnu/libz.so.1").string();
}

} // namespace

TEST_CASE("inject_files: sets by name or all, paths or source and target") {
    TempDir t;
    const auto cfg = site(t, "run:\n  inject:\n    a:\n      - /x/liba.so.1\n"
                             "      - {source: /y/b, target: /opt/b}\n    c:\n      - /z\n");
    const auto a = inject_files(cfg, {"a"});
    REQUIRE(a.size() == 2);
    CHECK(a[0].src == "/x/liba.so.1");
    CHECK(a[0].dst == "/x/liba.so.1");
    CHECK(a[1].src == "/y/b");
    CHECK(a[1].dst == "/opt/b");
    CHECK(inject_files(cfg, {}).size() == 3);
    CHECK(inject_files(cfg, {"c", "c"}).size() == 1);
    CHECK_THROWS_WITH(inject_files(cfg, {"nope"}),
                      "--inject: no set nope in the configuration (it has: a, c)");
}

TEST_CASE("inject_files: bad entries name the file, line and column") {
    TempDir t;
    const std::string f = (t / "site.yaml").string();
    CHECK_THROWS_WITH(
        inject_files(site(t, "run:\n  inject:\n    a:\n      - rel/x\n"), {}),
        doctest::Contains((f + ":4:9: run.inject.a entry must be an absolute path").c_str()));
    CHECK_THROWS_WITH(inject_files(site(t, "run:\n  inject:\n    a:\n      - {target: /x}\n"), {}),
                      doctest::Contains("entry without source"));
    CHECK_THROWS_WITH(
        inject_files(site(t, "run:\n  inject:\n    a:\n      - {source: /x, to: /y}\n"), {}),
        doctest::Contains("unknown key to (expected source, target)"));
    CHECK_THROWS_WITH(inject_files(site(t, "run:\n  inject:\n    a: /x\n"), {}),
                      doctest::Contains("run.inject.a must be a list of paths"));
    CHECK_THROWS_WITH(
        inject_files(site(t, "run:\n  inject:\n    a:\n      - {source: /x, target: /}\n"), {}),
        doctest::Contains("target can't be the image root"));
    CHECK_THROWS_AS(inject_files(site(t, "run: {}\n"), {}), UsageError);
}

TEST_CASE("group_libraries: libraries by directory, the rest one by one") {
    TempDir t;
    spit(t / "header.h", "int x;\n");
    fs::create_symlink("/lib/x86_64-linux-gnu/libz.so.1", t / "libz-link.so.1");
    const std::string link = (t / "libz-link.so.1").string(), header = (t / "header.h").string();
    const std::vector<InjectFile> files = {
        {"/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1"},
        {link, link},
        {header, header},
        {"/lib/x86_64-linux-gnu/libz.so.1", "/opt/z/libz.so.1"},
        {"/nonexistent/libq.so.1", "/nonexistent/libq.so.1"},
    };
    const Injection inj = group_libraries(files);
    const std::string real = libz();
    const std::string name = fs::path(real).filename().string();
    // One directory mount, then the rest in order.
    REQUIRE(inj.binds.size() == 4);
    CHECK(inj.binds[0].src == fs::path(real).parent_path());
    CHECK(inj.binds[0].dst == "/ch/inject/0");
    CHECK(inj.binds[1].src == t / "header.h");
    CHECK(inj.binds[2].dst == "/opt/z/libz.so.1");
    CHECK(inj.binds[3].src == "/nonexistent/libq.so.1"); // the bind step reports it
    for (const auto& b : inj.binds)
        CHECK(b.need == Need::make_dst);
    REQUIRE(inj.libs.size() == 3);
    CHECK(inj.libs[0].key == "libz.so.1");
    CHECK(inj.libs[0].value == "/ch/inject/0/" + name);
    CHECK(inj.libs[1].value == "/ch/inject/0/" + name); // through the symlink
    CHECK(inj.libs[2].value == "/opt/z/libz.so.1");
    CHECK(inj.upper_paths ==
          std::vector<std::string>{"ch/inject/0/"}); // the cache: write_upper_ld_cache
}

TEST_CASE("inject_files and group_libraries: libraries by name, from the host's cache") {
    TempDir t;
    const auto cfg = site(t, "run:\n  inject:\n    n:\n      - libz.so.1\n"
                             "      - /etc/hostname\n      - libq.so.2\n");
    const auto files = inject_files(cfg, {});
    REQUIRE(files.size() == 3);
    CHECK(files[0].by_name);
    CHECK(files[0].src == "libz.so.1");
    CHECK(files[0].origin == (t / "site.yaml").string() + ":4:9");
    CHECK_FALSE(files[1].by_name);
    const std::string host = image::make_ld_cache({
        {"libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", 0x0303, 0},
        {"libq.so.2", "/opt/q/lib/libq.so.2", 0x0303, 0},
        {"libq.so.2", "/opt/q/lib32/libq.so.2", 0x0003, 0},
    });
    const Injection inj = group_libraries(files, host);
    // Each library's directory bound (nothing read from the files, which
    // need not exist), the rest one by one.
    REQUIRE(inj.binds.size() == 3);
    CHECK(inj.binds[0].src == "/lib/x86_64-linux-gnu");
    CHECK(inj.binds[0].dst == "/ch/inject/0");
    CHECK(inj.binds[1].src == "/opt/q/lib");
    CHECK(inj.binds[1].dst == "/ch/inject/1");
    CHECK(inj.binds[2].src == "/etc/hostname");
    REQUIRE(inj.libs.size() == 2);
    CHECK(inj.libs[0].key == "libz.so.1");
    CHECK(inj.libs[0].value == "/ch/inject/0/libz.so.1");
    CHECK(inj.libs[0].flags == 0x0303);
    CHECK(inj.libs[1].value == "/ch/inject/1/libq.so.2");
    // A name the cache lacks, or no cache: an error that says where.
    const auto missing =
        inject_files(site(t, "run:\n  inject:\n    n:\n      - libnope.so.1\n"), {});
    CHECK_THROWS_WITH(group_libraries(missing, host),
                      doctest::Contains("no library libnope.so.1 in the host's /etc/ld.so.cache"));
    CHECK_THROWS_WITH(group_libraries(files), doctest::Contains(":4:9); give its path instead"));
    CHECK_THROWS_WITH(inject_files(site(t, "run:\n  inject:\n    n:\n      - ..\n"), {}),
                      doctest::Contains("entry must be a path or a library name"));
}

TEST_CASE("host_ld_cache: root's file only") {
    // This host's is root's and only root writes it.
    const MappedFile host = host_ld_cache();
    CHECK(image::LdCacheView(host.view()).size() > 0);
    TempDir t;
    spit(t / "cache", image::make_ld_cache({{"libz.so.1", "/z/libz.so.1", 0x0303, 0}}));
    ::chmod((t / "cache").c_str(), 0666);
    CHECK_THROWS_WITH(
        host_ld_cache((t / "cache").c_str()),
        doctest::Contains("is not a regular file of root's that only root may write"));
    CHECK_THROWS_WITH(host_ld_cache((t / "none").c_str()),
                      doctest::Contains("library names need the host's"));
    // A symlink where the file should be is not followed, even to the real one.
    fs::create_symlink("/etc/ld.so.cache", t / "link");
    CHECK_THROWS_WITH(host_ld_cache((t / "link").c_str()),
                      doctest::Contains("library names need the host's"));
    // Nor is a directory taken for it.
    fs::create_directory(t / "dir");
    CHECK_THROWS_WITH(host_ld_cache((t / "dir").c_str()),
                      doctest::Contains("is not a regular file of root's"));
}

TEST_CASE("make_plan with injection: -W added, cache before the seal, binds before -b") {
    RunOptions o;
    o.image_ref = "/img";
    o.command = {"true"};
    o.bind.push_back({"/scratch", "/mnt/0"});
    HostFacts h;
    h.euid = 1000;
    h.egid = 100;
    h.user = "alice";
    Injection inj;
    inj.binds = {{"/host/lib", "/ch/inject/0", Need::make_dst}};
    inj.libs = {{"libq.so.1", "/ch/inject/0/libq.so.1", 0x0303, 0}};
    inj.upper_paths = {"ch/inject/0/"};
    h.injection = inj;
    const Plan p = make_plan(o, "/img", h);
    CHECK(p.overlay_size == std::optional<std::string>(write_fake_default_size));
    CHECK(p.upper_paths == inj.upper_paths);
    std::size_t cache = 0, seal = 0, inject = 0, user_bind = 0;
    for (std::size_t i = 0; i < p.steps.size(); i++) {
        if (std::holds_alternative<WriteLdCache>(p.steps[i]))
            cache = i;
        if (std::holds_alternative<SealScratch>(p.steps[i]))
            seal = i;
        if (const auto* b = std::get_if<Bind>(&p.steps[i])) {
            if (b->dst == "/ch/inject/0")
                inject = i;
            if (b->dst == "/mnt/0")
                user_bind = i;
        }
    }
    CHECK(cache < seal);
    CHECK(seal < inject);
    CHECK(inject < user_bind);
    CHECK(describe(p).find("write /etc/ld.so.cache (the image's, with 1 injected") !=
          std::string::npos);
    o.write = true;
    CHECK_THROWS_AS(make_plan(o, "/img", h), UsageError);
    o.write = false;
    o.write_fake = "1g"; // -W given: its size stays
    CHECK(make_plan(o, "/img", h).overlay_size == std::optional<std::string>("1g"));
}

TEST_CASE("merged_ld_cache: injected first, image's hwcaps variants and same names dropped") {
    const std::string image = image::make_ld_cache({
        {"libq.so.1", "/usr/lib/libq.so.1", 0x0303, 0},
        {"libq.so.1", "/usr/lib/glibc-hwcaps/x86-64-v3/libq.so.1", 0x0303, (1ULL << 62) | 1},
        {"libr.so.2", "/usr/lib/libr.so.2", 0x0303, 0},
        {"libs.so.3", "/usr/lib/glibc-hwcaps/x86-64-v3/libs.so.3", 0x0303, (1ULL << 62) | 1},
    });
    const auto out = image::parse_ld_cache(
        merged_ld_cache({{"libq.so.1", "/ch/inject/0/libq.so.1", 0x0303, 0}}, image));
    REQUIRE(out.size() == 2);
    CHECK(out[0].key == "libr.so.2"); // the loader's order: descending
    CHECK(out[1].key == "libq.so.1");
    CHECK(out[1].value == "/ch/inject/0/libq.so.1");
    // An image cache out of the loader's order (ldconfig never writes one):
    // sorted before the merge.
    std::string swapped = image::make_ld_cache(
        {{"liba.so.1", "/a/liba.so.1", 0x0303, 0}, {"libz.so.1", "/z/libz.so.1", 0x0303, 0}});
    std::swap_ranges(swapped.begin() + 48, swapped.begin() + 72, swapped.begin() + 72);
    REQUIRE(image::parse_ld_cache(swapped)[0].key == "liba.so.1");
    const auto sorted =
        image::parse_ld_cache(merged_ld_cache({{"libq.so.1", "/q", 0x0303, 0}}, swapped));
    REQUIRE(sorted.size() == 3);
    CHECK(sorted[0].key == "libz.so.1");
    CHECK(sorted[1].key == "libq.so.1");
    CHECK(sorted[2].key == "liba.so.1");
    // No image cache, or garbage: the injected ones alone.
    CHECK(
        image::parse_ld_cache(merged_ld_cache({{"libq.so.1", "/q", 3, 0}}, std::nullopt)).size() ==
        1);
    CHECK(image::parse_ld_cache(merged_ld_cache({{"libq.so.1", "/q", 3, 0}}, "garbage")).size() ==
          1);
}

TEST_CASE("write_upper_ld_cache: the merged cache in the upper layer, /etc's mode kept") {
    TempDir t;
    fs::create_directories(t / "lower/etc");
    fs::permissions(t / "lower/etc", fs::perms(0750));
    spit(t / "lower/etc/ld.so.cache",
         image::make_ld_cache({{"libr.so.2", "/usr/lib/libr.so.2", 0x0303, 0}}));
    fs::create_directories(t / "upper");
    const Fd lower = open_at(AT_FDCWD, t / "lower", O_PATH | O_DIRECTORY);
    const Fd upper = open_at(AT_FDCWD, t / "upper", O_PATH | O_DIRECTORY);
    REQUIRE(write_upper_ld_cache(lower.get(), upper.get(),
                                 {{"libq.so.1", "/ch/inject/0/libq.so.1", 0x0303, 0}}));
    CHECK((fs::status(t / "upper/etc").permissions() & fs::perms::all) == fs::perms(0750));
    const auto out = image::parse_ld_cache(read_file(t / "upper/etc/ld.so.cache"));
    REQUIRE(out.size() == 2);
    CHECK(out[0].key == "libr.so.2");
    CHECK(out[1].value == "/ch/inject/0/libq.so.1");
    // The image's /etc a symlink: nothing written (the plan's step binds it).
    TempDir u;
    fs::create_directories(u / "lower/elsewhere");
    fs::create_symlink("elsewhere", u / "lower/etc");
    fs::create_directories(u / "upper");
    const Fd lower2 = open_at(AT_FDCWD, u / "lower", O_PATH | O_DIRECTORY);
    const Fd upper2 = open_at(AT_FDCWD, u / "upper", O_PATH | O_DIRECTORY);
    CHECK_FALSE(write_upper_ld_cache(lower2.get(), upper2.get(), {{"libq.so.1", "/q", 3, 0}}));
    CHECK(fs::is_empty(u / "upper"));
}

TEST_CASE("prepare_upper: made in the upper layer, never over a non-directory of the image") {
    TempDir t;
    fs::create_directories(t / "lower/etc");
    fs::create_directories(t / "lower/ch");
    spit(t / "lower/file", "x");
    fs::create_symlink("/elsewhere", t / "lower/etc/ld.so.cache");
    fs::create_directories(t / "upper");
    const Fd lower = open_at(AT_FDCWD, t / "lower", O_PATH | O_DIRECTORY);
    const Fd upper = open_at(AT_FDCWD, t / "upper", O_PATH | O_DIRECTORY);
    prepare_upper(lower.get(), upper.get(), "ch/inject/0/");
    prepare_upper(lower.get(), upper.get(), "etc/ld.so.cache");
    prepare_upper(lower.get(), upper.get(), "file/inside/");
    CHECK(fs::is_directory(t / "upper/ch/inject/0"));
    CHECK(fs::is_regular_file(t / "upper/etc/ld.so.cache")); // replaces the image's symlink
    CHECK_FALSE(fs::exists(t / "upper/file"));
    prepare_upper(lower.get(), upper.get(), "ch/inject/0/"); // twice is fine
}

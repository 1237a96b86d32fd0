// inject_ldso_test.cc: what injection learns from an image (ld.so.conf,
// ld.so.cache) and from a host library (ELF soname), on real files: this
// host's cache and libz, caches glibc's ldconfig writes, and hostile ones.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fixtures.hh"
#include "image/elf.hh"
#include "image/ldso.hh"
#include "util/error.hh"
#include "util/fd.hh"

using namespace ch;
using namespace ch::image;
using namespace ch::test;

namespace {

std::string host_cache() {
    return read_file("/etc/ld.so.cache");
}

void write(const fs::path& p, const std::string& s) {
    fs::create_directories(p.parent_path());
    spit(p, s);
}

// glibc's comparison of library names as its source documents it (digit
// runs by value, a digit after anything else), written plainly: the
// reference for ld_cache_cmp's quicker walk. Runs stay short in the test.
int reference_cmp(const char* p1, const char* p2) {
    auto digit = [](char c) {
        return c >= '0' && c <= '9';
    };
    while (*p1 != '\0') {
        if (digit(*p1)) {
            if (!digit(*p2))
                return 1;
            long v1 = 0, v2 = 0;
            while (digit(*p1))
                v1 = v1 * 10 + (*p1++ - '0');
            while (digit(*p2))
                v2 = v2 * 10 + (*p2++ - '0');
            if (v1 != v2)
                return v1 < v2 ? -1 : 1;
        } else if (digit(*p2)) {
            return -1;
        } else if (*p1 != *p2) {
            return *p1 - *p2;
        } else {
            ++p1;
            ++p2;
        }
    }
    return *p2 == '\0' ? 0 : -1;
}

int sign(int v) {
    return (v > 0) - (v < 0);
}

} // namespace

TEST_CASE("ld_cache_cmp orders names as glibc's loader does") {
    CHECK(ld_cache_cmp("libfoo.so.10", "libfoo.so.9") > 0);
    CHECK(ld_cache_cmp("libfoo.so.9", "libfoo.so.10") < 0);
    CHECK(ld_cache_cmp("libfoo.so.1", "libfoo.so.1") == 0);
    CHECK(ld_cache_cmp("libfoo.so.01", "libfoo.so.1") == 0);
    CHECK(ld_cache_cmp("lib1", "libx") > 0); // a digit sorts after a letter
    CHECK(ld_cache_cmp("libz.so", "libz.so.1") < 0);
    CHECK(ld_cache_cmp("libz.so.1", "libz.so") > 0);
    CHECK(ld_cache_cmp("liba", "libb") < 0);
}

TEST_CASE("ld_cache_cmp agrees with glibc's comparison on names that share prefixes") {
    // Short names over a small alphabet: shared prefixes that end inside,
    // before and after digit runs, leading zeros, one name a prefix of another.
    const std::string alphabet = "019a.";
    std::srand(42);
    for (int i = 0; i < 20000; i++) {
        std::string a = "lib", b = "lib";
        const int la = std::rand() % 6, lb = std::rand() % 6;
        for (int k = 0; k < la; k++)
            a += alphabet[static_cast<std::size_t>(std::rand()) % alphabet.size()];
        b = a.substr(0, 3 + static_cast<std::size_t>(std::rand() % (la + 1)));
        for (int k = 0; k < lb; k++)
            b += alphabet[static_cast<std::size_t>(std::rand()) % alphabet.size()];
        INFO(a, " vs ", b);
        CHECK(sign(ld_cache_cmp(a, b)) == sign(reference_cmp(a.c_str(), b.c_str())));
    }
}

TEST_CASE("this host's ld.so.cache parses, is in the loader's order, and survives a rewrite") {
    const auto entries = parse_ld_cache(host_cache());
    REQUIRE(entries.size() > 10);
    bool has_libc = false;
    for (std::size_t i = 0; i + 1 < entries.size(); i++)
        CHECK(ld_cache_cmp(entries[i].key, entries[i + 1].key) >= 0);
    for (const auto& e : entries)
        has_libc = has_libc || e.key == "libc.so.6";
    CHECK(has_libc);
    // The loader takes the first of equal entries (this host's cache has one
    // such pair: ld-linux.so.2 in /lib32 and /lib); a rewrite keeps only it.
    std::vector<LdCacheEntry> firsts;
    for (const auto& e : entries)
        if (firsts.empty() || firsts.back().key != e.key || firsts.back().flags != e.flags ||
            firsts.back().hwcap != e.hwcap)
            firsts.push_back(e);
    const auto again = parse_ld_cache(make_ld_cache(entries));
    REQUIRE(again.size() == firsts.size());
    for (std::size_t i = 0; i < firsts.size(); i++) {
        CHECK(again[i].key == firsts[i].key);
        CHECK(again[i].value == firsts[i].value);
        CHECK(again[i].flags == firsts[i].flags);
    }
}

TEST_CASE("a generated cache is one glibc's ldconfig reads, and ours come first") {
    TempDir t;
    std::vector<LdCacheEntry> e = {{"libinjected.so.3", "/opt/inj/libinjected.so.3", 0x0303, 0},
                                   {"libz.so.1", "/opt/inj/libz.so.1", 0x0303, 0}};
    for (auto& h : parse_ld_cache(host_cache()))
        e.push_back(h);
    spit(t / "cache", make_ld_cache(e));
    const std::string cmd =
        cat("/sbin/ldconfig -p -C ", (t / "cache").string(), " > ", (t / "out").string(), " 2>&1");
    REQUIRE(std::system(cmd.c_str()) == 0);
    const std::string out = read_file(t / "out");
    CHECK(out.find("libinjected.so.3 (libc6,x86-64) => /opt/inj/libinjected.so.3") !=
          std::string::npos);
    // The duplicate key from the image is dropped: the loader would take the
    // first, but one entry per name keeps the cache unambiguous.
    CHECK(out.find("libz.so.1 (libc6,x86-64) => /opt/inj/libz.so.1") != std::string::npos);
    CHECK(out.find("libz.so.1 (libc6,x86-64) => /lib") == std::string::npos);
}

TEST_CASE("splice_ld_cache: the image's strings kept in place, the same cache as a full merge") {
    // This host's cache, and the compat format (an old table first: the new
    // one's strings count from its own header), with two of ours, one of
    // them replacing an image entry.
    TempDir t;
    std::vector<std::string> images = {host_cache()};
    if (std::system(
            cat("/sbin/ldconfig -c compat -C ", (t / "c").string(), " 2>/dev/null").c_str()) == 0)
        images.push_back(read_file(t / "c"));
    std::vector<LdCacheRef> ours = {
        {"libz.so.1", "/ch/inject/0/libz.so.1.2.13", 0x0303, 0},
        {"libinjected.so.3", "/ch/inject/1/libinjected.so.3", 0x0303, 0}};
    std::sort(ours.begin(), ours.end(), ld_cache_before);
    for (const auto& image : images) {
        const auto theirs = parse_ld_cache_refs(image);
        const LdCacheView view(image);
        REQUIRE(view.size() == theirs.size());
        const std::string sp = splice_ld_cache(ours, view);
        const auto got = parse_ld_cache(sp);
        const auto want = parse_ld_cache(make_ld_cache_merged(ours, theirs, Merge::replace));
        REQUIRE(got.size() == want.size());
        for (std::size_t i = 0; i < got.size(); i++) {
            CHECK(got[i].key == want[i].key);
            CHECK(got[i].value == want[i].value);
            CHECK(got[i].flags == want[i].flags);
        }
        // The image's bytes after its entries are kept whole, right after
        // the new entries; only ours were copied after them.
        const std::string_view kept = view.after_entries();
        CHECK(kept.size() > image.size() / 2);
        const std::size_t kept_at = 48 + got.size() * 24;
        CHECK(std::string_view(sp).substr(kept_at, kept.size()) == kept);
        CHECK(sp.size() - kept_at - kept.size() < 100);
        // Given in parts: the entries in parts of at most 8 KiB, the kept
        // bytes whole; the same bytes as the string.
        std::vector<std::string> parts;
        splice_ld_cache(ours, view, [&](std::string_view p) { parts.emplace_back(p); });
        CHECK(std::any_of(parts.begin(), parts.end(),
                          [&](const std::string& p) { return p == kept; }));
        for (const auto& p : parts)
            CHECK((p.size() <= 8192 || p == kept));
        CHECK(join(parts, "") == sp);
        spit(t / "spliced", sp);
        const std::string cmd = cat("/sbin/ldconfig -p -C ", (t / "spliced").string(), " > ",
                                    (t / "out").string(), " 2>&1");
        REQUIRE(std::system(cmd.c_str()) == 0);
        const std::string out = read_file(t / "out");
        CHECK(out.find("libz.so.1 (libc6,x86-64) => /ch/inject/0/libz.so.1.2.13") !=
              std::string::npos);
        CHECK(out.find("libz.so.1 (libc6,x86-64) => /lib") == std::string::npos);
        CHECK(out.find("libc.so.6 (libc6,x86-64") != std::string::npos);
    }
    // A string that points into the image's own entries (no ldconfig writes
    // that) is copied, not referred to where the new entries now are.
    std::string odd = make_ld_cache({{"liba.so.1", "/a/liba.so.1", 0x0303, 0}});
    const std::uint32_t into_header = 0; // "glibc-ld.so.cache1.1" and what follows
    std::memcpy(odd.data() + 48 + 8, &into_header, 4);
    const auto theirs = parse_ld_cache_refs(odd);
    REQUIRE(theirs.size() == 1);
    const auto got = parse_ld_cache(splice_ld_cache({}, LdCacheView(odd)));
    REQUIRE(got.size() == 1);
    CHECK(got[0].value == theirs[0].value);
    CHECK(got[0].key == "liba.so.1");
}

TEST_CASE("the compat format (old table, then the new) parses") {
    TempDir t;
    const std::string cmd = cat("/sbin/ldconfig -c compat -C ", (t / "c").string(), " 2>/dev/null");
    if (std::system(cmd.c_str()) != 0) {
        MESSAGE("skipped: this ldconfig can't write the compat format");
        return;
    }
    const auto compat = parse_ld_cache(read_file(t / "c"));
    const auto plain = parse_ld_cache(host_cache());
    REQUIRE(compat.size() == plain.size());
    CHECK(compat.front().key == plain.front().key);
    CHECK(compat.back().value == plain.back().value);
}

TEST_CASE("hostile caches are refused with a reason, never read out of bounds") {
    const std::string good = make_ld_cache({{"liba.so.1", "/a/liba.so.1", 0x0303, 0}});
    CHECK_THROWS_WITH(parse_ld_cache("hello"), "not a glibc ld.so.cache");
    CHECK_THROWS_WITH(parse_ld_cache(good.substr(0, 30)), "truncated header");
    std::string many = good;
    const std::uint32_t n = 0x10000000;
    std::memcpy(many.data() + 20, &n, 4);
    CHECK_THROWS_WITH(parse_ld_cache(many), doctest::Contains("entries don't fit"));
    std::string far = good;
    const std::uint32_t off = 0x7fffffff;
    std::memcpy(far.data() + 48 + 4, &off, 4);
    CHECK_THROWS_WITH(parse_ld_cache(far), doctest::Contains("outside the file"));
    std::string unterminated = good.substr(0, good.size() - 1) + "x";
    CHECK_THROWS_WITH(parse_ld_cache(unterminated), doctest::Contains("not terminated"));
    std::string old(16, '\0');
    std::memcpy(old.data(), "ld.so-1.7.0", 11);
    CHECK_THROWS_WITH(parse_ld_cache(old), doctest::Contains("old format only"));
    const std::uint32_t huge = 0xffffffff;
    std::memcpy(old.data() + 12, &huge, 4);
    CHECK_THROWS_WITH(parse_ld_cache(old), doctest::Contains("larger than the file"));
    // The view of a cache (what ch-run merges) checks the same, every entry,
    // when it is made.
    for (const std::string& bad : {many, far, unterminated, old})
        CHECK_THROWS(static_cast<void>(LdCacheView(bad)));
    CHECK_THROWS_WITH(static_cast<void>(LdCacheView(far)), doctest::Contains("outside the file"));
    std::string second_bad = make_ld_cache(
        {{"liba.so.1", "/a/liba.so.1", 0x0303, 0}, {"libb.so.1", "/b/libb.so.1", 0x0303, 0}});
    std::memcpy(second_bad.data() + 48 + 24 + 8, &off, 4); // the second entry's value
    CHECK_THROWS_WITH(static_cast<void>(LdCacheView(second_bad)),
                      doctest::Contains("outside the file"));
    // Bytes rewritten after the view was made (a mapped file its owner
    // changes): an offset out of the file is found when read again.
    std::string changing = good;
    const LdCacheView moving(changing);
    REQUIRE(moving[0].key == "liba.so.1");
    std::memcpy(changing.data() + 48 + 4, &off, 4);
    CHECK_THROWS_WITH(static_cast<void>(moving[0]), doctest::Contains("changed while it was read"));
    const LdCacheView view(good);
    REQUIRE(view.size() == 1);
    CHECK(view[0].key == "liba.so.1");
    CHECK(view[0].value == "/a/liba.so.1");
    CHECK(view.sorted());
    CHECK(LdCacheView().size() == 0);
    CHECK(LdCacheView().after_entries().empty());
}

TEST_CASE("ld.so.conf: includes in order, comments, and nothing outside the root") {
    TempDir t;
    const fs::path root = t / "root";
    write(root / "etc/ld.so.conf", "# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/last\n");
    write(root / "etc/ld.so.conf.d/b.conf", "/b/lib # trailing\n/a/lib\n");
    write(root / "etc/ld.so.conf.d/a.conf", "/a/lib\n\n/a//lib/../lib2=libc6\n");
    write(root / "etc/ld.so.conf.d/a.txt", "/not/conf\n");
    write(t / "outside.conf", "/outside\n");
    fs::create_symlink("../../../outside.conf", root / "etc/ld.so.conf.d/c.conf");
    const Fd rootfd = open_at(AT_FDCWD, root, O_PATH | O_DIRECTORY);
    const auto dirs = ld_so_conf_dirs(rootfd.get());
    CHECK(dirs == std::vector<std::string>{"/a/lib", "/a/lib2", "/b/lib", "/opt/last"});

    // The first that exists is the library directory, wherever it resolves.
    fs::create_directories(root / "b/lib");
    CHECK(image_lib_dir(rootfd.get()) == "/b/lib");
    fs::create_directories(root / "real");
    fs::create_symlink("/real", root / "a");
    fs::create_directories(root / "real/lib2");
    CHECK(image_lib_dir(rootfd.get()) == "/a/lib2");
}

TEST_CASE("ld.so.conf: no file, a FIFO, an include loop") {
    TempDir t;
    const fs::path root = t / "root";
    fs::create_directories(root / "etc");
    const Fd rootfd = open_at(AT_FDCWD, root, O_PATH | O_DIRECTORY);
    CHECK(ld_so_conf_dirs(rootfd.get()).empty());
    CHECK(image_lib_dir(rootfd.get()) == "/usr/lib");
    fs::create_directories(root / "usr/lib64");
    CHECK(image_lib_dir(rootfd.get()) == "/usr/lib64");

    REQUIRE(::mkfifo((root / "etc/ld.so.conf").c_str(), 0600) == 0);
    CHECK_THROWS_WITH(ld_so_conf_dirs(rootfd.get()),
                      "can't read /etc/ld.so.conf in the image: not a regular file");
    fs::remove(root / "etc/ld.so.conf");
    write(root / "etc/ld.so.conf", "include ld.so.conf\n");
    CHECK_THROWS_WITH(ld_so_conf_dirs(rootfd.get()), doctest::Contains("nested deeper than"));
}

TEST_CASE("read_elf: a host library's soname and cache flags; damaged and non-ELF files") {
    const Fd z = open_at(AT_FDCWD, "/lib/x86_64-linux-gnu/libz.so.1", O_RDONLY);
    const auto info = read_elf(z.get(), "libz");
    REQUIRE(info);
    CHECK(info->shared);
    CHECK(info->soname == "libz.so.1");
#if defined(__x86_64__)
    CHECK(ld_cache_flags(*info) == 0x0303);
    CHECK(native_ld_cache_flags() == 0x0303); // this host's kind, as its libraries say
#endif
    TempDir t;
    const std::string whole = read_file("/lib/x86_64-linux-gnu/libz.so.1");
    spit(t / "cut", whole.substr(0, 200));
    const Fd cut = open_at(AT_FDCWD, t / "cut", O_RDONLY);
    CHECK_THROWS_WITH(read_elf(cut.get(), "cut"), doctest::Contains("can't read ELF file cut"));
    spit(t / "text", "#!/bin/sh\n");
    const Fd text = open_at(AT_FDCWD, t / "text", O_RDONLY);
    CHECK_FALSE(read_elf(text.get(), "text"));
    // Not regular files: no ELF file, and nothing waits (the size is never
    // asked for; the first read fails).
    const Fd dir = open_at(AT_FDCWD, t.path(), O_RDONLY | O_DIRECTORY);
    CHECK_FALSE(read_elf(dir.get(), "dir"));
    REQUIRE(::mkfifo((t / "fifo").c_str(), 0600) == 0);
    const Fd fifo = open_at(AT_FDCWD, t / "fifo", O_RDONLY | O_NONBLOCK);
    CHECK_FALSE(read_elf(fifo.get(), "fifo"));
    // A copy of the library, read without asking its size: the same answer.
    spit(t / "whole", whole);
    const Fd again = open_at(AT_FDCWD, t / "whole", O_RDONLY);
    const auto same = read_elf(again.get(), "whole");
    REQUIRE(same);
    CHECK(same->soname == "libz.so.1");
}

TEST_CASE("read_elf with deps: a host program's interpreter and libraries, from any reader; "
          "every cut of it fails cleanly") {
    const std::string prog = read_file("/bin/true");
    ElfRead read = [&](void* buf, std::size_t len, std::uint64_t off) {
        std::memcpy(buf, prog.data() + off, len);
        return true;
    };
    ElfDeps deps;
    const auto info = read_elf(read, prog.size(), "/bin/true", &deps);
    REQUIRE(info);
    REQUIRE(deps.interp);
    CHECK(deps.interp->starts_with("/"));
    CHECK(std::find(deps.needed.begin(), deps.needed.end(), "libc.so.6") != deps.needed.end());
    // What the fd reader says of the same file agrees.
    const Fd fd = open_at(AT_FDCWD, "/bin/true", O_RDONLY);
    const auto same = read_elf(fd.get(), "/bin/true");
    REQUIRE(same);
    CHECK(same->machine == info->machine);
    CHECK(same->soname == info->soname);
    // A library names no interpreter.
    const std::string lib = read_file("/lib/x86_64-linux-gnu/libz.so.1");
    read = [&](void* buf, std::size_t len, std::uint64_t off) {
        std::memcpy(buf, lib.data() + off, len);
        return true;
    };
    ElfDeps lib_deps;
    const auto z = read_elf(read, lib.size(), "libz", &lib_deps);
    REQUIRE(z);
    CHECK(z->soname == "libz.so.1");
    CHECK_FALSE(lib_deps.interp);
    CHECK(std::find(lib_deps.needed.begin(), lib_deps.needed.end(), "libc.so.6") !=
          lib_deps.needed.end());
    // The program cut short anywhere in its headers and strings: an answer
    // or an error, never a read past the end (ASan watches).
    const auto tail = std::max<std::size_t>(deps.interp->size(), 4096);
    for (std::size_t n = 0; n < std::min(prog.size(), tail * 4); n += 7) {
        const std::string cut = prog.substr(0, n);
        const ElfRead read_cut = [&](void* buf, std::size_t len, std::uint64_t off) {
            if (off > cut.size() || len > cut.size() - off)
                return false;
            std::memcpy(buf, cut.data() + off, len);
            return true;
        };
        ElfDeps d;
        try {
            static_cast<void>(read_elf(read_cut, cut.size(), "cut", &d));
        } catch (const Error& e) {
            CHECK(std::string(e.what()).find("can't read ELF file cut") != std::string::npos);
        }
    }
    // A reader that fails although the size says the bytes are there.
    const ElfRead failing = [](void*, std::size_t, std::uint64_t) {
        return false;
    };
    CHECK_FALSE(read_elf(failing, prog.size(), "failing"));
}

TEST_CASE("find_ld_cache: a soname's plain entry for these flags, as the loader finds it") {
    const std::string cache = make_ld_cache({
        {"liba.so.1", "/lib/liba.so.1", 0x0303, 0},
        {"libq.so.1", "/usr/lib/glibc-hwcaps/x86-64-v3/libq.so.1", 0x0303, (1ULL << 62) | 1},
        {"libq.so.1", "/usr/lib/libq.so.1", 0x0303, 0},
        {"libq.so.1", "/usr/lib32/libq.so.1", 0x0003, 0},
        {"libq.so.10", "/usr/lib/libq.so.10", 0x0303, 0},
        {"libz.so.1", "/lib/libz.so.1", 0x0303, 0},
    });
    const std::string_view view = cache;
    REQUIRE(LdCacheView(cache).sorted());
    CHECK(find_ld_cache(view, "libq.so.1", 0x0303)->value == "/usr/lib/libq.so.1");
    CHECK(find_ld_cache(view, "libq.so.1", 0x0003)->value == "/usr/lib32/libq.so.1");
    CHECK(find_ld_cache(view, "libq.so.10", 0x0303)->value == "/usr/lib/libq.so.10");
    CHECK(find_ld_cache(view, "liba.so.1", 0x0303)->value == "/lib/liba.so.1");
    CHECK(find_ld_cache(view, "libz.so.1", 0x0303)->value == "/lib/libz.so.1");
    CHECK_FALSE(find_ld_cache(view, "libz.so.1", 0x0003));
    CHECK_FALSE(find_ld_cache(view, "libq.so", 0x0303));
    CHECK_FALSE(find_ld_cache(view, "libzz.so.1", 0x0303));
    CHECK_THROWS_WITH(find_ld_cache("", "liba.so.1", 0x0303),
                      doctest::Contains("not a glibc ld.so.cache"));
    // A string read on the way out of the file is an error, not a read.
    std::string far = cache;
    const std::uint32_t off = 0x7fffffff;
    std::memcpy(far.data() + 48 + 2 * 24 + 4, &off, 4); // a key the search reads
    CHECK_THROWS_WITH(find_ld_cache(far, "libq.so.1", 0x0303),
                      doctest::Contains("outside the file"));
    // Every name of this host's cache is found where a scan finds it.
    const std::string host = host_cache();
    const LdCacheView hv(host);
    for (std::size_t i = 0; i < hv.size(); i++) {
        const LdCacheRef e = hv[i];
        if (e.hwcap != 0)
            continue;
        const auto got = find_ld_cache(host, e.key, e.flags);
        REQUIRE(got);
        CHECK(got->key == e.key);
        CHECK(got->flags == e.flags);
    }
    // Out of the loader's order (no ldconfig writes that): scanned.
    std::string swapped = make_ld_cache(
        {{"liba.so.1", "/a/liba.so.1", 0x0303, 0}, {"libz.so.1", "/z/libz.so.1", 0x0303, 0}});
    std::swap_ranges(swapped.begin() + 48, swapped.begin() + 72, swapped.begin() + 72);
    REQUIRE_FALSE(LdCacheView(swapped).sorted());
    CHECK(find_ld_cache(swapped, "libz.so.1", 0x0303)->value == "/z/libz.so.1");
    CHECK(find_ld_cache(swapped, "liba.so.1", 0x0303)->value == "/a/liba.so.1");
}

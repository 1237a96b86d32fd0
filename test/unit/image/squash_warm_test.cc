// squash_warm_test.cc: which files and blocks the FUSE server inflates
// ahead for a container's first program (squash_warm.hh), on SquashFS files
// made by mksquashfs from a tree holding this host's /bin/true, a stand-in
// loader and libc, and an ld.so.cache naming them; and what a damaged cache
// or a script leaves of the guess, and what hostile images (loops,
// directories, FIFOs and climbing links where files are expected, a header
// pointing past the end) leave of it.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <doctest/doctest.h>

#include "fixtures.hh"
#include "image/elf.hh"
#include "image/ldso.hh"
#include "image/squash_warm.hh"
#include "util/fd.hh"
#include "util/strings.hh"

using namespace ch;
using namespace ch::image;
using namespace ch::image::squash;
using ch::test::TempDir;

namespace {

bool have_mksquashfs() {
    return std::system("command -v mksquashfs >/dev/null 2>&1") == 0;
}

void put(const fs::path& p, const std::string& s) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}

// n bytes that don't compress, so each 128 KiB of them is a block.
std::string noise(std::size_t n) {
    std::mt19937_64 rng(n);
    std::string s(n, '\0');
    for (auto& c : s)
        c = static_cast<char>(rng());
    return s;
}

struct Host {
    std::string prog = read_file("/bin/true");
    ElfDeps deps;
    std::int32_t flags = 0;

    Host() {
        const ElfRead read = [&](void* buf, std::size_t len, std::uint64_t off) {
            std::memcpy(buf, prog.data() + off, len);
            return true;
        };
        const auto elf = read_elf(read, prog.size(), "/bin/true", &deps);
        REQUIRE(elf);
        REQUIRE(deps.interp);
        flags = ld_cache_flags(*elf);
    }
};

// The tree: /bin/prog (this host's /bin/true), its interpreter's path a
// relative symlink to /lib/ld.so (3 blocks), /lib/libc.so.6 and
// /lib/libm.so.6 (5 MiB each: more than one file's share), /etc/ld.so.cache
// as given, and /bin/script.
fs::path make_image(const TempDir& t, const Host& h, const std::string& cache) {
    const fs::path tree = t / "tree";
    put(tree / "bin/prog", h.prog);
    ::chmod((tree / "bin/prog").c_str(), 0755);
    put(tree / "bin/script", "#!/bin/sh\nexit 0\n");
    put(tree / "lib/ld.so", noise(3 * 131072));
    put(tree / "lib/libc.so.6", noise(5 << 20));
    put(tree / "lib/libm.so.6", noise((5 << 20) + 1)); // not the same file: not deduplicated
    const fs::path interp = tree / h.deps.interp->substr(1);
    fs::create_directories(interp.parent_path());
    fs::path up; // from the interpreter's directory back to the root
    const fs::path dir = fs::path(*h.deps.interp).parent_path().relative_path();
    for (auto it = dir.begin(); it != dir.end(); ++it)
        up /= "..";
    fs::create_symlink(up / "lib/ld.so", interp);
    put(tree / "etc/ld.so.cache", cache);
    const fs::path img = t / "image.sqfs";
    REQUIRE(std::system(cat("mksquashfs '", tree.string(), "' '", img.string(),
                            "' -b 131072 -noappend -quiet -no-progress >/dev/null 2>&1")
                            .c_str()) == 0);
    return img;
}

struct Opened {
    std::shared_ptr<Image> img;
    Inflater inf;
    BlockCache cache{32 << 20};
    WarmBlocks blocks;

    explicit Opened(const fs::path& p)
        : img(Image::open(p))
        , inf(*img) {
        blocks = [this](const BlockKey& k) {
            return cache.get(k, img->block_size(), [this](const BlockKey& key, Block& out) {
                out.size = img->read_block(key, out.data.get(), out.cap, inf);
            });
        };
    }

    WarmFile file(const std::string& path) {
        Inode in;
        REQUIRE(img->resolve(path, inf, in));
        return {path, in.size, img->layout(in, inf)};
    }

    std::vector<std::string> paths(std::string_view command, std::string_view path) {
        std::vector<std::string> out;
        for (const WarmFile& f : warm_files(*img, inf, blocks, command, path))
            out.push_back(f.path);
        return out;
    }
};

} // namespace

TEST_CASE("warm_files: the interpreter, the libraries the cache names, then the program" *
          doctest::skip(!have_mksquashfs())) {
    const Host h;
    const TempDir t;
    // A decoy first: the same name with other flags is not the loader's pick.
    const std::string cache = make_ld_cache({{"libc.so.6", "/lib/wrong", h.flags ^ 0x0100, 0},
                                             {"libc.so.6", "/lib/libc.so.6", h.flags, 0},
                                             {"libother.so.1", "/lib/other", h.flags, 0}});
    Opened o(make_image(t, h, cache));
    const std::vector<std::string> want = {*h.deps.interp, "/lib/libc.so.6", "/bin/prog"};
    CHECK(o.paths("prog", "/nonexistent:relative:/bin") == want); // execvp's search
    CHECK(o.paths("/bin/prog", "") == want);
    CHECK(o.paths("/bin/../bin/./prog", "") ==
          std::vector<std::string>{*h.deps.interp, "/lib/libc.so.6", "/bin/../bin/./prog"});
    CHECK(o.paths("/usr/../bin/prog", "").empty()); // no /usr: as the kernel finds it
    CHECK(o.paths("./prog", "/bin").empty());       // the working directory is not known
    CHECK(o.paths("missing", "/bin").empty());
    CHECK(o.paths("bin", "/").empty()); // a directory
    CHECK(o.paths("", "/bin").empty());
    // A script: the program alone (its interpreter is not followed).
    CHECK(o.paths("script", "/bin") == std::vector<std::string>{"/bin/script"});

    // Blocks: the loader's 3, libc's first 4 MiB (32), none of the program
    // (all in a fragment); each once.
    const auto files = warm_files(*o.img, o.inf, o.blocks, "prog", "/bin");
    const std::vector<BlockKey> keys = warm_blocks(files, o.img->block_size());
    CHECK(keys.size() == 3 + 32);
    CHECK(keys.front() == files[0].layout.block(0));
    CHECK(keys[3] == files[1].layout.block(0));
    auto sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    // The same file twice: its blocks once.
    CHECK(warm_blocks({files[1], files[1], files[0]}, o.img->block_size()).size() == 32 + 3);
    // Two large files: 4 MiB of each, 8 MiB in all (the loader's 3 first).
    const std::vector<WarmFile> large = {files[0], files[1], o.file("/lib/libm.so.6")};
    CHECK(warm_blocks(large, o.img->block_size()).size() == 64);
}

TEST_CASE("warm_files: a damaged loader cache leaves the interpreter and the program" *
          doctest::skip(!have_mksquashfs())) {
    const Host h;
    const TempDir t;
    Opened o(make_image(t, h, "glibc-ld.so.cache1.1 but not really a cache"));
    CHECK(o.paths("prog", "/bin") == std::vector<std::string>{*h.deps.interp, "/bin/prog"});
}

TEST_CASE("read_file_bytes: across blocks, into the tail, and not past the end" *
          doctest::skip(!have_mksquashfs())) {
    const Host h;
    const TempDir t;
    Opened o(make_image(t, h, make_ld_cache({})));
    const auto files = warm_files(*o.img, o.inf, o.blocks, "prog", "/bin");
    REQUIRE(files.size() == 2); // no libraries in an empty cache
    const WarmFile& ld = files[0];
    const std::string want = noise(3 * 131072);
    std::string got(200000, '\0');
    REQUIRE(read_file_bytes(ld, o.img->block_size(), o.blocks, got.data(), got.size(), 100000));
    CHECK(got == want.substr(100000, 200000));
    const WarmFile& prog = files[1];
    std::string end(100, '\0');
    REQUIRE(read_file_bytes(prog, o.img->block_size(), o.blocks, end.data(), end.size(),
                            prog.size - 100));
    CHECK(end == h.prog.substr(h.prog.size() - 100));
    CHECK_FALSE(read_file_bytes(prog, o.img->block_size(), o.blocks, end.data(), end.size(),
                                prog.size - 99));
    CHECK_FALSE(read_file_bytes(prog, o.img->block_size(), o.blocks, end.data(), 1, prog.size));
}

namespace {

// mksquashfs tree into t/NAME.sqfs.
fs::path squash_tree(const TempDir& t, const fs::path& tree, const std::string& name) {
    const fs::path img = t / (name + ".sqfs");
    REQUIRE(std::system(cat("mksquashfs '", tree.string(), "' '", img.string(),
                            "' -noappend -quiet -no-progress >/dev/null 2>&1")
                            .c_str()) == 0);
    return img;
}

// prog with its PT_INTERP's offset moved far past the end of the file.
std::string interp_past_end(std::string prog) {
    Elf64_Ehdr eh;
    std::memcpy(&eh, prog.data(), sizeof eh);
    for (std::size_t i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        const std::size_t at = eh.e_phoff + i * sizeof ph;
        std::memcpy(&ph, prog.data() + at, sizeof ph);
        if (ph.p_type == PT_INTERP) {
            ph.p_offset = std::uint64_t{1} << 40;
            std::memcpy(prog.data() + at, &ph, sizeof ph);
        }
    }
    return prog;
}

} // namespace

TEST_CASE("warm_files: hostile images: loops, directories, FIFOs and climbing links where "
          "files are expected, a header pointing past the end" *
          doctest::skip(!have_mksquashfs())) {
    const Host h;
    const TempDir t;
    // The loader cache a symlink to itself, the interpreter's path a link to
    // the root directory, and a program whose PT_INTERP lies outside it.
    const fs::path a = t / "a";
    put(a / "bin/ok", h.prog);
    put(a / "bin/bad", interp_past_end(h.prog));
    fs::create_directories(a / "etc");
    fs::create_symlink("ld.so.cache", a / "etc/ld.so.cache");
    const fs::path interp = a / h.deps.interp->substr(1);
    fs::create_directories(interp.parent_path());
    fs::create_symlink("/", interp);
    Opened o(squash_tree(t, a, "a"));
    CHECK(o.paths("ok", "/bin") == std::vector<std::string>{"/bin/ok"});
    CHECK(o.paths("bad", "/bin").empty()); // a damaged header: no guess at all
    // The cache a directory; its entries: a path climbing above the root
    // (stays inside: found), a FIFO, and a link loop (both left out).
    const fs::path b = t / "b";
    put(b / "bin/ok", h.prog);
    put(b / "lib/libc.so.6", "not really libc\n");
    fs::create_directories(b / "etc");
    REQUIRE(::mkfifo((b / "lib/libfifo.so.1").c_str(), 0600) == 0);
    fs::create_symlink("libloop.so.1", b / "lib/libloop.so.1");
    put(b / "etc/ld.so.cache", make_ld_cache({{"libc.so.6", "/../../../lib/libc.so.6", h.flags, 0},
                                              {"libfifo.so.1", "/lib/libfifo.so.1", h.flags, 0},
                                              {"libloop.so.1", "/lib/libloop.so.1", h.flags, 0}}));
    Opened ob(squash_tree(t, b, "b"));
    CHECK(ob.paths("ok", "/bin") == std::vector<std::string>{"/../../../lib/libc.so.6", "/bin/ok"});
    fs::remove(b / "etc/ld.so.cache");
    fs::create_directories(b / "etc/ld.so.cache");
    Opened oc(squash_tree(t, b, "c"));
    CHECK(oc.paths("ok", "/bin") == std::vector<std::string>{"/bin/ok"});
}

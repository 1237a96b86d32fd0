// squash_gzip_test.cc: the libdeflate gzip compressor (squash_gzip.cc) against
// libsquashfs's own gzip backend, which is zlib: blocks go through ours and
// come back through zlib's inflate and the other way round, the streams are
// checked as RFC 1950 says, and the options record is read and written the
// way libsquashfs does it. Also the compressor-name table and the block-size
// parser that ch-convert uses.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <libdeflate.h>
#include <sqfs/compressor.h>
#include <sqfs/error.h>
#include <sqfs/io.h>
#include <sqfs/super.h>

#include "image/squash.hh"
#include "image/squash_compressors.hh"
#include "image/squash_io.hh"
#include "test/unit/image/fixtures.hh"

using namespace ch::image;
using ch::image::squash::Ptr;
using Bytes = std::vector<sqfs_u8>;

namespace {

constexpr sqfs_u32 block = 128 * 1024;

sqfs_compressor_config_t gzip_config(bool compress, sqfs_u32 level = 9, sqfs_u16 window = 15) {
    sqfs_compressor_config_t cfg{};
    REQUIRE(sqfs_compressor_config_init(&cfg, SQFS_COMP_GZIP, block,
                                        compress ? 0 : SQFS_COMP_FLAG_UNCOMPRESS) == 0);
    cfg.level = level;
    cfg.opt.gzip.window_size = window;
    return cfg;
}

// Ours, through make_compressor (what the sink uses).
Ptr<sqfs_compressor_t> ours(bool compress, sqfs_u32 level = 9) {
    Ptr<sqfs_compressor_t> c;
    REQUIRE(squash::make_compressor(gzip_config(compress, level), c) == 0);
    return c;
}

// libsquashfs's own, on zlib.
Ptr<sqfs_compressor_t> zlib(bool compress, sqfs_u32 level = 9) {
    const auto cfg = gzip_config(compress, level);
    sqfs_compressor_t* c = nullptr;
    REQUIRE(sqfs_compressor_create(&cfg, &c) == 0);
    return Ptr<sqfs_compressor_t>(c);
}

// Compressed, or empty if the compressor says "store it raw".
Bytes squeeze(sqfs_compressor_t* c, const Bytes& in) {
    Bytes out(in.size() + 64);
    const sqfs_s32 n = c->do_block(c, in.data(), static_cast<sqfs_u32>(in.size()), out.data(),
                                   static_cast<sqfs_u32>(out.size()));
    REQUIRE(n >= 0);
    out.resize(static_cast<std::size_t>(n));
    return out;
}

Bytes inflate(sqfs_compressor_t* c, const Bytes& in, std::size_t room = block) {
    Bytes out(room);
    const sqfs_s32 n = c->do_block(c, in.data(), static_cast<sqfs_u32>(in.size()), out.data(),
                                   static_cast<sqfs_u32>(out.size()));
    REQUIRE(n > 0);
    out.resize(static_cast<std::size_t>(n));
    return out;
}

Bytes text(std::size_t n) {
    Bytes b;
    for (unsigned i = 0; b.size() < n; ++i)
        for (const char ch : "line " + std::to_string(i * 7919 % 100000) + " of a squashfs block\n")
            if (b.size() < n)
                b.push_back(static_cast<sqfs_u8>(ch));
    return b;
}

Bytes noise(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    Bytes b(n);
    for (auto& x : b)
        x = static_cast<sqfs_u8>(rng());
    return b;
}

// The samples every direction is tried with: compressible, one repeated
// byte, zeros, a full block, and data with a random half.
std::vector<Bytes> samples() {
    Bytes mixed = text(block / 2);
    const Bytes r = noise(block / 2, 3);
    mixed.insert(mixed.end(), r.begin(), r.end());
    return {text(5000), Bytes(100, 'x'), Bytes(block, 0), text(block), mixed};
}

std::uint32_t be32(const sqfs_u8* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           p[3];
}

// A fresh file for the options record, and the bytes that end up in it.
struct ScratchFile {
    ch::test::TempDir tmp;
    std::filesystem::path path = tmp / "img";
    Ptr<sqfs_file_t> file;

    ScratchFile() {
        std::ofstream(path).put('\0');
        file = squash::open_file(path, squash::Access::write);
    }

    std::string bytes() const {
        std::string b(std::filesystem::file_size(path), '\0');
        std::ifstream(path, std::ios::binary)
            .read(b.data(), static_cast<std::streamsize>(b.size()));
        return b;
    }
};

} // namespace

TEST_SUITE("image") {

    TEST_CASE("squash gzip: our blocks inflate with zlib, and zlib's with ours") {
        auto mine = ours(true);
        auto theirs = zlib(false);
        auto mine_in = ours(false);
        auto zlib_out = zlib(true);
        for (const Bytes& s : samples()) {
            INFO("sample of ", s.size(), " bytes");
            const Bytes z = squeeze(mine.get(), s);
            REQUIRE(!z.empty());
            CHECK(z.size() < s.size());
            CHECK((inflate(theirs.get(), z) == s));
            CHECK((inflate(mine_in.get(), z) == s));
            const Bytes zz = squeeze(zlib_out.get(), s);
            REQUIRE(!zz.empty());
            CHECK((inflate(mine_in.get(), zz) == s));
        }
    }

    TEST_CASE("squash gzip: blocks are RFC 1950 zlib streams with a correct Adler-32") {
        auto c = ours(true);
        for (const Bytes& s : samples()) {
            const Bytes z = squeeze(c.get(), s);
            REQUIRE(z.size() > 6);
            CHECK(z[0] == 0x78);                  // deflate, 32 KiB window
            CHECK((z[0] * 256 + z[1]) % 31 == 0); // header check bits
            CHECK((z[1] & 0x20) == 0);            // no preset dictionary
            CHECK(be32(&z[z.size() - 4]) == libdeflate_adler32(1, s.data(), s.size()));
        }
    }

    TEST_CASE("squash gzip: data that doesn't shrink is left to be stored raw") {
        auto c = ours(true);
        for (const std::size_t n : {std::size_t{1}, std::size_t{100}, std::size_t{block}}) {
            const Bytes r = noise(n, 7);
            CHECK(squeeze(c.get(), r).empty());
        }
    }

    TEST_CASE("squash gzip: the same input gives the same bytes, in every copy and level") {
        for (const sqfs_u32 level : {1u, 6u, 9u}) {
            auto a = ours(true, level);
            auto b = ours(true, level);
            Ptr<sqfs_compressor_t> copy(static_cast<sqfs_compressor_t*>(sqfs_copy(a.get())));
            REQUIRE(copy);
            for (const Bytes& s : samples()) {
                const Bytes first = squeeze(a.get(), s);
                CHECK((squeeze(a.get(), s) == first));
                CHECK((squeeze(b.get(), s) == first));
                CHECK((squeeze(copy.get(), s) == first));
            }
        }
    }

    TEST_CASE("squash gzip: levels as mksquashfs's: 1 is larger than 9, both inflate") {
        const Bytes s = text(block);
        const Bytes fast = squeeze(ours(true, 1).get(), s);
        const Bytes best = squeeze(ours(true, 9).get(), s);
        CHECK(fast.size() > best.size());
        auto z = zlib(false);
        CHECK((inflate(z.get(), fast) == s));
        CHECK((inflate(z.get(), best) == s));
        Ptr<sqfs_compressor_t> bad;
        CHECK(squash::make_compressor(gzip_config(true, 10), bad) != 0);
        CHECK(squash::make_compressor(gzip_config(true, 0), bad) != 0);
    }

    TEST_CASE("squash gzip: damaged input is an error, too little room is 0") {
        auto c = ours(false);
        Bytes z = squeeze(ours(true).get(), text(block));
        Bytes out(block);
        // too little room for the output
        CHECK(c->do_block(c.get(), z.data(), static_cast<sqfs_u32>(z.size()), out.data(), 1000) ==
              0);
        // a wrong checksum, garbage, a truncated stream
        z.back() ^= 1;
        CHECK(c->do_block(c.get(), z.data(), static_cast<sqfs_u32>(z.size()), out.data(), block) <
              0);
        const Bytes g = noise(5000, 9);
        CHECK(c->do_block(c.get(), g.data(), static_cast<sqfs_u32>(g.size()), out.data(), block) <
              0);
        z.back() ^= 1;
        CHECK(c->do_block(c.get(), z.data(), static_cast<sqfs_u32>(z.size() / 2), out.data(),
                          block) < 0);
    }

    TEST_CASE(
        "squash gzip: the options record: none at the default, mksquashfs's layout otherwise") {
        {
            ScratchFile f;
            auto c = ours(true, 9);
            CHECK(c->write_options(c.get(), f.file.get()) == 0);
        }
        ScratchFile f;
        auto c = ours(true, 3);
        CHECK(c->write_options(c.get(), f.file.get()) == 10);
        f.file.reset();
        const std::string b = f.bytes();
        REQUIRE(b.size() == sizeof(sqfs_super_t) + 10);
        // uncompressed metadata block of 8 bytes; level 3, window 15, no strategies
        CHECK(b.substr(sizeof(sqfs_super_t)) ==
              std::string("\x08\x80\x03\x00\x00\x00\x0f\x00\x00\x00", 10));
        // libsquashfs's zlib backend reads it back as level 3
        auto file = squash::open_file(f.path, squash::Access::read);
        auto z = zlib(false);
        REQUIRE(z->read_options(z.get(), file.get()) == 0);
        sqfs_compressor_config_t cfg{};
        z->get_configuration(z.get(), &cfg);
        CHECK(cfg.level == 3);
        CHECK(cfg.opt.gzip.window_size == 15);
    }

    TEST_CASE("squash gzip: reads the records libsquashfs writes, refuses bad ones") {
        ScratchFile f;
        auto w = zlib(true, 5);
        REQUIRE(w->write_options(w.get(), f.file.get()) > 0);
        f.file.reset();
        auto mine = ours(false);
        {
            auto file = squash::open_file(f.path, squash::Access::read);
            REQUIRE(mine->read_options(mine.get(), file.get()) == 0);
            sqfs_compressor_config_t cfg{};
            mine->get_configuration(mine.get(), &cfg);
            CHECK(cfg.level == 5);
            CHECK(cfg.id == SQFS_COMP_GZIP);
            CHECK((cfg.flags & SQFS_COMP_FLAG_UNCOMPRESS) != 0);
        }
        const std::string good = f.bytes();
        const auto patched = [&](std::size_t at, char v) {
            std::string b = good;
            b[sizeof(sqfs_super_t) + at] = v;
            std::ofstream(f.path, std::ios::binary | std::ios::trunc) << b;
            auto file = squash::open_file(f.path, squash::Access::read);
            auto c = ours(false);
            return c->read_options(c.get(), file.get());
        };
        CHECK(patched(0, 0x09) == SQFS_ERROR_CORRUPTED);   // size 9
        CHECK(patched(1, 0x00) == SQFS_ERROR_CORRUPTED);   // "compressed" record
        CHECK(patched(2, 0x00) == SQFS_ERROR_UNSUPPORTED); // level 0
        CHECK(patched(2, 0x0a) == SQFS_ERROR_UNSUPPORTED); // level 10
        CHECK(patched(6, 0x10) == SQFS_ERROR_UNSUPPORTED); // window 16
        CHECK(patched(8, 0x40) == SQFS_ERROR_UNSUPPORTED); // unknown strategy
        // a file that ends before the record
        std::ofstream(f.path, std::ios::binary | std::ios::trunc)
            << good.substr(0, sizeof(sqfs_super_t) + 4);
        auto file = squash::open_file(f.path, squash::Access::read);
        CHECK(mine->read_options(mine.get(), file.get()) < 0);
    }

    TEST_CASE("squash gzip: a smaller window goes to libsquashfs's zlib backend, and still works") {
        Ptr<sqfs_compressor_t> c;
        REQUIRE(squash::make_compressor(gzip_config(true, 9, 12), c) == 0);
        sqfs_compressor_config_t cfg{};
        c->get_configuration(c.get(), &cfg);
        CHECK(cfg.opt.gzip.window_size == 12);
        const Bytes s = text(block);
        CHECK((inflate(ours(false).get(), squeeze(c.get(), s)) == s));
    }

    TEST_CASE("squash compressors: one table, names and ids as SquashFS has them") {
        CHECK(squash_compressor_name(1) == "gzip");
        CHECK(squash_compressor_name(6) == "zstd");
        CHECK(squash_compressor_name(0).empty());
        CHECK(squash_compressor_name(7).empty());
        CHECK(squash_compressor_id("xz") == SQFS_COMP_XZ);
        CHECK(squash_compressor_id("lz4") == SQFS_COMP_LZ4);
        CHECK(squash_compressor_id("GZIP") == 0);
        CHECK(squash::compressor_name(99) == "unknown compressor 99");
        const auto w = squash_compressors();
        REQUIRE(!w.empty());
        CHECK(w.front() == "gzip");
        for (const char* c : {"zstd", "xz", "lz4"})
            CHECK(std::find(w.begin(), w.end(), c) != w.end());
        CHECK(std::find(w.begin(), w.end(), "lzma") == w.end());
    }

    TEST_CASE("squash options: block sizes as people write them, and what is wrong with options") {
        CHECK(parse_squash_block_size("65536") == 65536u);
        CHECK(parse_squash_block_size("64K") == 65536u);
        CHECK(parse_squash_block_size("64k") == 65536u);
        CHECK(parse_squash_block_size("64KiB") == 65536u);
        CHECK(parse_squash_block_size("1M") == 1048576u);
        CHECK(parse_squash_block_size("1MiB") == 1048576u);
        CHECK(parse_squash_block_size("3000") == 3000u); // a size; not a valid one
        for (const char* bad :
             {"", "K", "64KB", "64Ki", "1G", "0x1000", "-4096", " 4096", "4096 ", "1.5M"})
            CHECK_MESSAGE(!parse_squash_block_size(bad), bad);
        const auto huge = parse_squash_block_size("99999999999999999999999M");
        REQUIRE(huge);
        CHECK(!is_squash_block_size(*huge));
        for (const std::uint64_t ok : {4096u, 8192u, 131072u, 1048576u})
            CHECK(is_squash_block_size(ok));
        for (const std::uint64_t bad : {0u, 2048u, 3000u, 2097152u, 1048575u})
            CHECK(!is_squash_block_size(bad));

        SquashOptions o;
        CHECK(squash_options_problem(o).empty());
        o.block_size = 3000;
        CHECK(squash_options_problem(o) ==
              "invalid block size 3000 (a power of two from 4K (4096) to 1M (1048576))");
        o.block_size = 4096;
        o.compressor = "lzma";
        CHECK(squash_options_problem(o).starts_with(
            "this build can't compress with 'lzma' (it can with: gzip, "));
        o.compressor = "foo\n";
        CHECK(squash_options_problem(o).starts_with("unknown compressor 'foo\\n'"));
    }

} // TEST_SUITE

// squash_image_test.cc: the hostile-image checks of squash_image.cc, each on
// an image made here by mksquashfs and then damaged in one named way (the
// three crashes of libsquashfuse named in issue 8 among them). Every one
// must be refused with a message that says what is wrong, through ch-run's
// door (SquashFile::open) and ch-convert's (make_squash_source).
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <libdeflate.h>

#include "image/squash.hh"
#include "image/squash_image.hh"
#include "image/squash_serve.hh"
#include "util/error.hh"
#include "util/strings.hh"

using namespace ch;
using namespace ch::image;

namespace {

bool have_mksquashfs() {
    return std::system("command -v mksquashfs >/dev/null 2>&1") == 0;
}

struct Tmp {
    fs::path path;

    Tmp() {
        std::string tmpl = (fs::temp_directory_path() / "ch-unit-sqimg.XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }

    ~Tmp() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string slurp(const fs::path& p) {
    std::string s(fs::file_size(p), '\0');
    std::ifstream(p, std::ios::binary).read(s.data(), static_cast<std::streamsize>(s.size()));
    return s;
}

void spit(const fs::path& p, const std::string& s) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}

// The tree of issue 8's first crash: about 100 entries with 100-character
// names and one named AAAAAAAAAAAAAAAA, small files (so fragments), stored
// uncompressed (-noI -noD -noF -noX) so the bytes can be found and changed.
fs::path make_plain_image(const Tmp& t) {
    const fs::path tree = t.path / "tree";
    fs::create_directories(tree);
    for (int i = 0; i < 100; i++) {
        std::string name(100, static_cast<char>('a' + i % 26));
        name += std::to_string(i);
        std::ofstream(tree / name) << "file " << i << "\n";
    }
    std::ofstream(tree / "AAAAAAAAAAAAAAAA") << "the one\n";
    const fs::path img = t.path / "plain.sqfs";
    REQUIRE(std::system(cat("mksquashfs '", tree.string(), "' '", img.string(),
                            "' -noI -noD -noF -noX -noappend -quiet -no-progress >/dev/null 2>&1")
                            .c_str()) == 0);
    return img;
}

void put_bytes(std::string& s, std::size_t at, const std::string& bytes) {
    REQUIRE(at + bytes.size() <= s.size());
    s.replace(at, bytes.size(), bytes);
}

std::string le32(std::uint32_t v) {
    return std::string(reinterpret_cast<const char*>(&v), 4);
}

std::string le64(std::uint64_t v) {
    return std::string(reinterpret_cast<const char*>(&v), 8);
}

// Both doors refuse the image, exit 84, with a message that has why in it.
void both_refuse(const fs::path& img, const std::string& why) {
    INFO("expecting: ", why);
    try {
        SquashFile::open(img);
        FAIL("SquashFile::open accepted it");
    } catch (const Error& e) {
        CHECK(e.exit_code() == Exit::squash);
        CHECK(std::string(e.what()).starts_with(cat("can't mount ", img.string(), ": ")));
        CHECK(std::string(e.what()).find(why) != std::string::npos);
    }
    try {
        auto src = make_squash_source(img);
        Entry e;
        std::vector<char> buf(1 << 16);
        while (src->next(e))
            while (src->read(buf.data(), buf.size()) > 0) {
            }
        FAIL("the squash source accepted it");
    } catch (const Error& e) {
        CHECK(e.exit_code() == Exit::squash);
        CHECK(std::string(e.what()).starts_with(cat("can't read ", img.string(), ": ")));
        CHECK(std::string(e.what()).find(why) != std::string::npos);
    }
}

} // namespace

TEST_SUITE("image") {

    TEST_CASE("squash_image: the undamaged image opens and reads" *
              doctest::skip(!have_mksquashfs())) {
        const Tmp t;
        const fs::path img = make_plain_image(t);
        SquashFile f = SquashFile::open(img);
        CHECK(f.has("/AAAAAAAAAAAAAAAA"));
        auto src = make_squash_source(img);
        Entry e;
        int n = 0;
        while (src->next(e))
            n++;
        CHECK(n == 102); // the root, 100 files, AAAA...
    }

    TEST_CASE("squash_image: a directory entry whose name claims 65536 bytes (issue 8, crash 1)" *
              doctest::skip(!have_mksquashfs())) {
        const Tmp t;
        const fs::path img = make_plain_image(t);
        std::string s = slurp(img);
        const std::size_t at = s.rfind("AAAAAAAAAAAAAAAA");
        REQUIRE(at != std::string::npos);
        put_bytes(s, at - 2, "\xff\xff");
        spit(img, s);
        both_refuse(img, "(a name of 65536 bytes)");
    }

    TEST_CASE("squash_image: a block size of 2 GiB (issue 8, crash 2)" *
              doctest::skip(!have_mksquashfs())) {
        const Tmp t;
        const fs::path img = make_plain_image(t);
        std::string s = slurp(img);
        put_bytes(s, 12, std::string("\x00\x00\x00\x80", 4));
        spit(img, s);
        both_refuse(img, "block size 2147483648, not a power of two from 4 KiB to 1 MiB");
    }

    TEST_CASE("squash_image: a fragment count of 0 while files use fragments (issue 8, crash 3)" *
              doctest::skip(!have_mksquashfs())) {
        const Tmp t;
        const fs::path img = make_plain_image(t);
        std::string s = slurp(img);
        put_bytes(s, 16, le32(0));
        spit(img, s);
        both_refuse(img, "fragment index 0 out of range");
    }

    TEST_CASE("squash_image: superblock fields that disagree or point outside" *
              doctest::skip(!have_mksquashfs())) {
        const Tmp t;
        const fs::path img = make_plain_image(t);
        const std::string good = slurp(img);
        std::uint64_t used = 0;
        std::memcpy(&used, good.data() + 40, 8);

        struct Case {
            std::size_t at;
            std::string bytes;
            std::string why;
        };

        const std::vector<Case> cases = {
            {12, le32(3000), "block size 3000, not a power of two"},
            {12, le32(2048), "block size 2048, not a power of two from 4 KiB"},
            {12, le32(2 << 20), "block size 2097152"},
            {22, std::string("\x0d\x00", 2), "but block_log 13"},
            {28, std::string("\x03\x00", 2), "unsupported SquashFS version 3.0"},
            {64, le64(used + 100), "impossible inode or directory table offsets"},
            {72, le64(10), "impossible inode or directory table offsets"},
            {48, le64(used), "impossible id table offset"},
            {80, le64(used + 4096), "a table starts outside the image"},
            {16, le32(1 << 30), "fragments)"},
            {32, le64(std::uint64_t{1} << 40), "corrupted inode reference"},
        };
        for (const Case& c : cases) {
            std::string s = good;
            put_bytes(s, c.at, c.bytes);
            spit(img, s);
            both_refuse(img, c.why);
        }
    }

    TEST_CASE("squash_image: truncated at several lengths" * doctest::skip(!have_mksquashfs())) {
        const Tmp t;
        const fs::path img = make_plain_image(t);
        const std::string good = slurp(img);
        for (const std::size_t len : {std::size_t{0}, std::size_t{3}, std::size_t{95},
                                      std::size_t{96}, good.size() / 3, good.size() / 2}) {
            spit(img, good.substr(0, len));
            both_refuse(img, len < 4 ? "bad magic" : "truncated");
        }
    }

    TEST_CASE("squash_image: a data block larger than the block size, or that inflates larger" *
              doctest::skip(!have_mksquashfs())) {
        const Tmp t;
        const fs::path path = make_plain_image(t);
        const auto img = squash::Image::open(path);
        squash::Inflater inf(*img);
        std::vector<char> out(img->block_size());
        // A size header claiming one byte more than a block.
        CHECK_THROWS_WITH_AS(
            img->read_block({96, img->block_size() + 1}, out.data(), out.size(), inf),
            doctest::Contains("corrupted data block"), squash::SquashError);
        CHECK_THROWS_AS(img->read_block({96, 1U << 31}, out.data(), out.size(), inf),
                        squash::SquashError);
        // A zlib stream of two blocks' worth of zeros must not inflate into one.
        std::vector<char> zeros(2 * img->block_size(), 0);
        libdeflate_compressor* c = libdeflate_alloc_compressor(6);
        REQUIRE(c != nullptr);
        std::vector<char> z(4096);
        const std::size_t zn =
            libdeflate_zlib_compress(c, zeros.data(), zeros.size(), z.data(), z.size());
        libdeflate_free_compressor(c);
        REQUIRE(zn > 0);
        CHECK_THROWS_WITH_AS(inf.inflate(z.data(), zn, out.data(), out.size()),
                             doctest::Contains("inflates to more than"), squash::SquashError);
        CHECK(inf.inflate(z.data(), zn, zeros.data(), zeros.size()) == zeros.size());
    }

    TEST_CASE("squash_image: ch-convert refuses a tree deeper than 1024 directories" *
              doctest::skip(!have_mksquashfs())) {
        const Tmp t;
        // The tree is too deep for a path on disk: mksquashfs makes it from
        // pseudo-file definitions.
        fs::create_directory(t.path / "empty");
        std::string defs, p;
        for (int i = 0; i < 1030; i++) {
            p += "d";
            defs += p + " d 755 0 0\n";
            p += "/";
        }
        std::ofstream(t.path / "pseudo") << defs;
        const fs::path img = t.path / "deep.sqfs";
        REQUIRE(std::system(cat("mksquashfs '", (t.path / "empty").string(), "' '", img.string(),
                                "' -pf '", (t.path / "pseudo").string(),
                                "' -noappend -quiet -no-progress >/dev/null 2>&1")
                                .c_str()) == 0);
        auto src = make_squash_source(img);
        Entry e;
        try {
            while (src->next(e)) {
            }
            FAIL("a tree 1030 directories deep was read");
        } catch (const Error& err) {
            CHECK(err.exit_code() == Exit::squash);
            CHECK(std::string(err.what()).find("more than 1024 directories deep") !=
                  std::string::npos);
        }
    }

} // TEST_SUITE

// xz_crc64_test.cc: our lzma_crc64 (lib/image/xz_crc64.cc) gives the .xz
// format's CRC-64, checked against what `xz -C crc64` records.
#include <cstring>
#include <string>

#include <lzma.h>

#include <doctest/doctest.h>

namespace {
std::uint64_t crc_of(const std::string& s, std::uint64_t start = 0) {
    return lzma_crc64(reinterpret_cast<const std::uint8_t*>(s.data()), s.size(), start);
}
} // namespace

TEST_SUITE("image") {
    TEST_CASE("xz_crc64: the values xz -C crc64 records") {
        CHECK(crc_of("") == 0);
        CHECK(crc_of("123456789") == 0x995dc9bbdf1939faULL);
        CHECK(crc_of("The quick brown fox jumps over the lazy dog") == 0x5b5eb8c2e54aa1c4ULL);
        CHECK(crc_of(std::string(1000000, 'a')) == 0x7a0d29398112e1baULL);
    }

    TEST_CASE("xz_crc64: a CRC continues over pieces, as liblzma's does") {
        const std::string s = "The quick brown fox jumps over the lazy dog";
        for (std::size_t cut = 0; cut <= s.size(); cut += 7)
            CHECK(crc_of(s.substr(cut), crc_of(s.substr(0, cut))) == crc_of(s));
    }
}

// xz_crc64.cc: liblzma's lzma_crc64, for ch-run's static link only (the
// Makefile links this object into ch-run by name; nothing else uses it).
//
// Why: ch-run links libsquashfs's xz decoder, and with it liblzma's
// crc64_fast.o, whose constructor probes the CPU with CPUID at every start
// of the process, whether or not an xz image is ever read. In a VM a CPUID
// traps to the hypervisor (12.5 us each on our CI machines); that
// constructor cost 2.8% of every `ch-run DIR -- true`, and ch-run starts once
// per MPI rank. Defined here, lzma_crc64 is no longer missing when the
// linker reaches liblzma.a, so crc64_fast.o and its constructor stay out.
//
// It is the CRC-64 of the .xz format (ECMA-182 polynomial, reflected, initial
// and final XOR all ones), byte by byte from a table built at compile time:
// xz data in SquashFS images is checked with CRC-32 (mksquashfs, libsquashfs),
// so this runs at most for the rare stream written with a CRC-64 check, and
// speed does not matter. test/unit/image/xz_crc64_test.cc checks it against
// values from `xz -C crc64`.
#include <array>
#include <cstddef>
#include <cstdint>

#include <lzma.h>

namespace {

constexpr std::uint64_t xz_poly = 0xC96C5795D7870F42ULL; // ECMA-182, reflected

constexpr std::array<std::uint64_t, 256> make_table() {
    std::array<std::uint64_t, 256> t{};
    for (std::uint64_t i = 0; i < 256; i++) {
        std::uint64_t r = i;
        for (int bit = 0; bit < 8; bit++)
            r = (r & 1) != 0 ? (r >> 1) ^ xz_poly : r >> 1;
        t[i] = r;
    }
    return t;
}

constexpr std::array<std::uint64_t, 256> table = make_table();

} // namespace

// crc continues a previous result (0 to start), as liblzma's does.
extern "C" uint64_t lzma_crc64(const uint8_t* buf, size_t size, uint64_t crc) noexcept {
    crc = ~crc;
    for (std::size_t i = 0; i < size; i++)
        crc = table[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

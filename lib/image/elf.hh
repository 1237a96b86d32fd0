// elf.hh: the little an injector needs to know about a shared library: its
// soname (the name programs' DT_NEEDED entries and ld.so.cache keys use) and
// which glibc cache flags its machine takes; and, for the FUSE server's
// read-ahead, what a program will load. Reads only headers, with every
// offset checked against the file's size, so a damaged file is an error,
// never a crash.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ch::image {

struct ElfInfo {
    std::uint16_t machine = 0;         // e_machine
    bool is64 = false;                 // ELFCLASS64
    bool shared = false;               // ET_DYN
    std::optional<std::string> soname; // DT_SONAME, when the file has one
};

// nullopt when fd is not an ELF file of this host's byte order; throws Error
// naming what for a damaged one.
std::optional<ElfInfo> read_elf(int fd, std::string_view what);

// What a program asks the loader for: its interpreter (PT_INTERP) and the
// libraries it names (DT_NEEDED, at most 256), in the file's order.
struct ElfDeps {
    std::optional<std::string> interp;
    std::vector<std::string> needed;
};

// Reads len bytes at off (off + len <= the file's size) into buf; false if
// it can't.
using ElfRead = std::function<bool(void* buf, std::size_t len, std::uint64_t off)>;

// The same for a file of size bytes that read reads, and with deps, what the
// program needs.
std::optional<ElfInfo> read_elf(const ElfRead& read, std::uint64_t size, std::string_view what,
                                ElfDeps* deps = nullptr);

// glibc's ld.so.cache flags for a library of this kind (FLAG_ELF_LIBC6 plus
// the machine's FLAG_*_LIB64 bits), which its loader compares exactly.
std::int32_t ld_cache_flags(const ElfInfo& elf);
// The flags of this program's own kind of library (x86-64: 0x0303).
std::int32_t native_ld_cache_flags();

} // namespace ch::image

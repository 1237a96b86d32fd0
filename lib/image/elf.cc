// elf.cc: see elf.hh. Headers are read with pread at checked offsets; the
// dynamic section is capped, and a string is read at most 4 KiB long.
#include "image/elf.hh"

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include <elf.h>
#include <unistd.h>

#include "util/error.hh"
#include "util/strings.hh"

namespace ch::image {

namespace {

constexpr std::size_t max_dynamic = 1 << 20; // bytes of PT_DYNAMIC read
constexpr std::size_t max_phdrs = 4096;
constexpr std::size_t max_soname = 4096; // bytes of any string read
constexpr std::size_t max_needed = 256;  // DT_NEEDED entries kept

// Up to len bytes at off: how many were read (short at the end of the file,
// 0 on an error).
std::size_t pread_upto(int fd, void* buf, std::size_t len, std::uint64_t off) {
    std::size_t done = 0;
    while (done < len) {
        const ssize_t n =
            ::pread(fd, static_cast<char*>(buf) + done, len - done, static_cast<off_t>(off + done));
        if (n <= 0)
            break;
        done += static_cast<std::size_t>(n);
    }
    return done;
}

// The file's first 4 KiB are read once: they hold the header and the
// program headers, and in smaller libraries the soname. ch-run reads every
// injected library's headers at each start, so system calls count: the
// size is not asked for (a read that comes up short says where the file
// ends), and a descriptor that is not a regular file fails the first read
// (EISDIR, ESPIPE) and is no ELF file.
struct Reader {
    int fd;
    std::uint64_t size = UINT64_MAX; // until a short read shows the end
    char head[4096];
    std::size_t head_len = 0;

    explicit Reader(int f)
        : fd(f) {
        head_len = pread_upto(fd, head, sizeof head, 0);
        if (head_len < sizeof head)
            size = head_len;
    }

    // Up to len bytes at off: how many (0 past the end).
    std::size_t read_upto(void* buf, std::size_t len, std::uint64_t off) const {
        if (off >= size)
            return 0;
        len = static_cast<std::size_t>(std::min<std::uint64_t>(len, size - off));
        if (off <= head_len && len <= head_len - off) {
            std::memcpy(buf, head + off, len);
            return len;
        }
        return pread_upto(fd, buf, len, off);
    }

    bool read(void* buf, std::size_t len, std::uint64_t off) const {
        return read_upto(buf, len, off) == len;
    }
};

// The same over bytes that someone else reads (a file inside a SquashFS
// image, for the FUSE server), of a known size.
struct FnReader {
    const ElfRead& fn;
    std::uint64_t size;

    std::size_t read_upto(void* buf, std::size_t len, std::uint64_t off) const {
        if (off >= size)
            return 0;
        len = static_cast<std::size_t>(std::min<std::uint64_t>(len, size - off));
        return fn(buf, len, off) ? len : 0;
    }

    bool read(void* buf, std::size_t len, std::uint64_t off) const {
        return off <= size && read_upto(buf, len, off) == len;
    }
};

// n Ts, in place when n <= N, else on the heap. Not initialised: filled
// by a read that must succeed whole.
template <typename T, std::size_t N>
class SmallBuf {
public:
    explicit SmallBuf(std::size_t n)
        : n_(n) {
        if (n > N)
            heap_.resize(n);
    }

    T* data() { return n_ > N ? heap_.data() : local_; }

    std::size_t size() const { return n_; }

    T* begin() { return data(); }

    T* end() { return data() + n_; }

private:
    std::size_t n_;
    T local_[N];
    std::vector<T> heap_;
};

template <typename Ehdr, typename Phdr, typename Dyn, typename R>
ElfInfo read_class(const R& r, std::string_view what, ElfDeps* deps) {
    const std::uint64_t size = r.size;
    auto damaged = [&](std::string_view why) {
        fail("can't read ELF file ", what, ": ", why);
    };
    Ehdr eh{};
    if (!r.read(&eh, sizeof eh, 0))
        damaged("header truncated");
    ElfInfo info;
    info.machine = eh.e_machine;
    info.is64 = sizeof(Ehdr) == sizeof(Elf64_Ehdr);
    info.shared = eh.e_type == ET_DYN;
    if (eh.e_phnum == 0)
        return info;
    if (eh.e_phentsize != sizeof(Phdr) || eh.e_phnum > max_phdrs)
        damaged("bad program header table");
    // Small tables (nearly all) in buffers on the stack: ch-run reads every
    // injected library's headers at each start, and the heap costs more.
    SmallBuf<Phdr, 32> ph(eh.e_phnum);
    if (!r.read(ph.data(), ph.size() * sizeof(Phdr), eh.e_phoff))
        damaged("program header table outside the file");
    // A string of at most max_soname bytes at off, ending in NUL.
    auto read_string = [&](std::uint64_t off, std::string_view name) {
        // Most strings are short: 256 bytes first, the whole limit if need be.
        char buf[max_soname];
        const void* nul = nullptr;
        std::size_t len = 0;
        for (const std::size_t want : {std::size_t{256}, max_soname}) {
            len = r.read_upto(buf, want, off);
            if (len == 0)
                damaged(cat(name, " outside the file"));
            nul = std::memchr(buf, '\0', len);
            if (nul || len < want)
                break;
        }
        if (!nul)
            damaged(cat(name, " not terminated"));
        return std::string(buf, static_cast<std::size_t>(static_cast<const char*>(nul) - buf));
    };
    const Phdr* dyn_ph = nullptr;
    for (const auto& p : ph) {
        if (p.p_type == PT_DYNAMIC)
            dyn_ph = &p;
        else if (p.p_type == PT_INTERP && deps)
            deps->interp = read_string(p.p_offset, "interpreter");
    }
    if (!dyn_ph)
        return info;
    if (dyn_ph->p_filesz > max_dynamic)
        damaged("dynamic section too large");
    SmallBuf<Dyn, 128> dyn(dyn_ph->p_filesz / sizeof(Dyn));
    if (!r.read(dyn.data(), dyn.size() * sizeof(Dyn), dyn_ph->p_offset))
        damaged("dynamic section outside the file");
    std::optional<std::uint64_t> strtab, soname;
    std::vector<std::uint64_t> needed;
    for (const auto& d : dyn) {
        if (d.d_tag == DT_NULL)
            break;
        if (d.d_tag == DT_STRTAB)
            strtab = d.d_un.d_ptr;
        else if (d.d_tag == DT_SONAME)
            soname = d.d_un.d_val;
        else if (d.d_tag == DT_NEEDED && deps && needed.size() < max_needed)
            needed.push_back(d.d_un.d_val);
    }
    if (!soname && needed.empty())
        return info;
    if (!strtab)
        damaged("DT_SONAME or DT_NEEDED without DT_STRTAB");
    // DT_STRTAB is an address; the PT_LOAD segment holding it says where it
    // is in the file.
    std::optional<std::uint64_t> file_off;
    for (const auto& p : ph)
        if (p.p_type == PT_LOAD && *strtab >= p.p_vaddr && *strtab - p.p_vaddr < p.p_filesz)
            file_off = p.p_offset + (*strtab - p.p_vaddr);
    if (!file_off || *file_off > size)
        damaged("string table outside the file");
    auto string_at = [&](std::uint64_t off, std::string_view name) {
        if (off > size - *file_off)
            damaged(cat(name, " outside the file"));
        return read_string(*file_off + off, name);
    };
    if (soname)
        info.soname = string_at(*soname, "soname");
    for (const std::uint64_t n : needed)
        deps->needed.push_back(string_at(n, "DT_NEEDED name"));
    return info;
}

template <typename R>
std::optional<ElfInfo> read_any(const R& r, std::string_view what, ElfDeps* deps) {
    unsigned char ident[EI_NIDENT];
    if (!r.read(ident, sizeof ident, 0) || std::memcmp(ident, ELFMAG, SELFMAG) != 0)
        return std::nullopt;
    const unsigned char native =
        std::endian::native == std::endian::little ? ELFDATA2LSB : ELFDATA2MSB;
    if (ident[EI_DATA] != native)
        return std::nullopt;
    if (ident[EI_CLASS] == ELFCLASS64)
        return read_class<Elf64_Ehdr, Elf64_Phdr, Elf64_Dyn>(r, what, deps);
    if (ident[EI_CLASS] == ELFCLASS32)
        return read_class<Elf32_Ehdr, Elf32_Phdr, Elf32_Dyn>(r, what, deps);
    return std::nullopt;
}

} // namespace

std::optional<ElfInfo> read_elf(int fd, std::string_view what) {
    return read_any(Reader(fd), what, nullptr);
}

std::optional<ElfInfo> read_elf(const ElfRead& read, std::uint64_t size, std::string_view what,
                                ElfDeps* deps) {
    return read_any(FnReader{read, size}, what, deps);
}

std::int32_t ld_cache_flags(const ElfInfo& elf) {
    // glibc's FLAG_ELF_LIBC6 and the FLAG_*_LIB64 values from its ldconfig.h
    // (a file format fact: the loader refuses entries whose flags differ).
    constexpr std::int32_t libc6 = 0x0003;
    if (!elf.is64)
        return libc6;
    switch (elf.machine) {
    case EM_X86_64:
        return libc6 | 0x0300;
    case EM_S390:
        return libc6 | 0x0400;
    case EM_PPC64:
        return libc6 | 0x0500;
    case EM_AARCH64:
        return libc6 | 0x0a00;
    default:
        return libc6;
    }
}

std::int32_t native_ld_cache_flags() {
    ElfInfo self;
    self.is64 = sizeof(void*) == 8;
#if defined(__x86_64__)
    self.machine = EM_X86_64;
#elif defined(__aarch64__)
    self.machine = EM_AARCH64;
#elif defined(__powerpc64__)
    self.machine = EM_PPC64;
#elif defined(__s390x__)
    self.machine = EM_S390;
#endif
    return ld_cache_flags(self);
}

} // namespace ch::image

// compression.cc: magic numbers, from each format's specification.
#include "registry/compression.hh"

#include <array>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include "util/error.hh"
#include "util/fd.hh"

namespace ch::registry {

std::string_view compression_name(Compression c) {
    switch (c) {
    case Compression::none:
        return "none";
    case Compression::gzip:
        return "gzip";
    case Compression::zstd:
        return "zstd";
    case Compression::xz:
        return "xz";
    case Compression::bzip2:
        return "bzip2";
    }
    return "none";
}

Compression detect_compression(std::span<const std::byte> head) {
    const auto starts = [&](std::initializer_list<unsigned char> magic) {
        if (head.size() < magic.size())
            return false;
        std::size_t i = 0;
        for (unsigned char b : magic)
            if (head[i++] != std::byte{b})
                return false;
        return true;
    };
    if (starts({0x1f, 0x8b}))
        return Compression::gzip;
    if (starts({0x28, 0xb5, 0x2f, 0xfd}))
        return Compression::zstd;
    if (starts({0xfd, '7', 'z', 'X', 'Z', 0x00}))
        return Compression::xz;
    if (starts({'B', 'Z', 'h'}))
        return Compression::bzip2;
    return Compression::none;
}

Compression detect_compression(const std::filesystem::path& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        throw_errno("can't open ", path);
    std::array<std::byte, 8> buf{};
    std::size_t got = 0;
    while (got < buf.size()) {
        const ssize_t n = ::read(fd.get(), buf.data() + got, buf.size() - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_errno("can't read ", path);
        if (n == 0)
            break;
        got += static_cast<std::size_t>(n);
    }
    return detect_compression(std::span<const std::byte>(buf.data(), got));
}

} // namespace ch::registry

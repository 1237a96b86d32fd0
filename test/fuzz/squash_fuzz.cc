// squash_fuzz.cc: libFuzzer harness for ch-convert's SquashFS source
// (make_squash_source): superblock, tables, inodes, directory listings,
// fragments, xattrs and data blocks. Each input is written to a memfd and
// read as a file, the way ch-convert reads one: every entry walked, every
// byte of every file read into a sink that drops it. Then the FUSE server's
// guess of what a container's first program loads (squash_warm.hh: path
// lookups, ELF headers, the image's ld.so.cache) runs on the same image.
//
// The source's contract is that a bad image throws ch::Error (warm_files
// throws nothing for one); anything else
// (a crash, a sanitizer report, another exception, an allocation over
// -malloc_limit_mb, a hang) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

#include "image/squash.hh"
#include "image/squash_warm.hh"
#include "util/error.hh"

namespace {

int input_fd() {
    static const int fd = [] {
        const int f = ::memfd_create("squash-fuzz", MFD_CLOEXEC);
        if (f < 0) {
            std::perror("memfd_create");
            std::abort();
        }
        return f;
    }();
    return fd;
}

void put_input(int fd, const std::uint8_t* data, std::size_t size) {
    if (::ftruncate(fd, 0) != 0)
        std::abort();
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
        if (n <= 0)
            std::abort();
        done += static_cast<std::size_t>(n);
    }
}

// What the FUSE server's Warmer does, without a server.
void warm(const std::string& path) {
    using namespace ch::image::squash;
    const auto img = Image::open(path, 1 << 20);
    Inflater inf(*img);
    BlockCache cache(8 << 20);
    const WarmBlocks blocks = [&](const BlockKey& k) {
        return cache.get(k, img->block_size(), [&](const BlockKey& key, Block& out) {
            out.size = img->read_block(key, out.data.get(), out.cap, inf);
        });
    };
    for (const char* command : {"/bin/true", "sh"}) {
        const auto files = warm_files(*img, inf, blocks, command, "/usr/bin:/bin");
        static_cast<void>(warm_blocks(files, img->block_size()));
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const int fd = input_fd();
    put_input(fd, data, size);
    static const std::string path = "/proc/self/fd/" + std::to_string(fd);
    try {
        const auto src = ch::image::make_squash_source(path);
        ch::image::Entry e;
        static char buf[64 * 1024];
        while (src->next(e))
            if (e.is_file())
                while (src->read(buf, sizeof buf) > 0) {
                }
    } catch (const ch::Error&) {
        // A refused image: what the source promises.
    }
    try {
        warm(path);
    } catch (const ch::Error&) {
        // Image::open refused it.
    }
    return 0;
}

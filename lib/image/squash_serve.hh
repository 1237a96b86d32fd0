// squash_serve.hh: a SquashFS image file served read-only over FUSE, in
// process, with libsquashfuse (reading) and libfuse3's low-level API (serving,
// several threads). This file never mounts anything: ch-run mounts FUSE in its
// own mount namespace and hands the /dev/fuse descriptor to the process that
// calls serve() (lib/run/squash.cc). squashfuse's headers stay out of here
// (they hold generic names such as util.h): only squash_serve.cc sees them.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "util/fd.hh"

namespace ch::image {

namespace fs = std::filesystem;

// FUSE node ids from SquashFS inode ids. An inode id is where the inode sits
// in the inode table ((metadata block << 16) | offset, 48 bits), so it is
// unique and the same in every libsquashfuse instance. The root must be
// FUSE_ROOT_ID (1); every other id is shifted by 2, so 0 (invalid) and 1 are
// never produced. Pure arithmetic: the server's threads, each with its own
// libsquashfuse instance, agree on every number without a shared table, and
// the kernel's FORGET needs no bookkeeping.
constexpr std::uint64_t fuse_root_node = 1;
constexpr std::uint64_t node_of_inode(std::uint64_t inode_id, std::uint64_t root_id) {
    return inode_id == root_id ? fuse_root_node : inode_id + 2;
}
constexpr std::uint64_t inode_of_node(std::uint64_t node, std::uint64_t root_id) {
    return node == fuse_root_node ? root_id : node - 2;
}

// readdir offsets, which the kernel hands back to continue a listing: 0 is
// the start, 1 is after ".", 2 after ".." (the start of the SquashFS
// listing), and 2 + N after the entry that ends at byte N of the listing
// (libsquashfuse's sqfs_dir_open can resume exactly there).
constexpr std::int64_t after_dot = 1;
constexpr std::int64_t after_dotdot = 2;
constexpr std::int64_t readdir_offset_after(std::int64_t listing_offset) {
    return listing_offset + 2;
}
constexpr std::int64_t listing_offset_of(std::int64_t readdir_offset) {
    return readdir_offset <= after_dotdot ? 0 : readdir_offset - 2;
}

struct ServeOptions {
    uid_t uid = 0;             // owner of every file, in the mounting user namespace
    gid_t gid = 0;
    unsigned max_threads = 0;  // 0: from the CPUs this process may run on
    bool debug = false;        // libfuse logs every request (at -vvv)
};

// An opened and checked SquashFS file. Not safe for concurrent use: serve()
// gives each thread its own libsquashfuse instance.
class SquashFile {
public:
    // Opens path and checks it before any namespace work: magic, superblock,
    // size (truncation), tables, and the root directory with its entries.
    // Throws Error (Exit::squash): "can't mount PATH: REASON".
    static SquashFile open(const fs::path& path);

    SquashFile(SquashFile&&) noexcept;
    SquashFile& operator=(SquashFile&&) noexcept;
    ~SquashFile();

    const fs::path& path() const;
    // The image's descriptor (read with pread; kept open by the server).
    int fd() const;
    // Whether path exists inside the image, resolving ".." and symlinks
    // (absolute ones from the image's root) as resolve_in_root does for a
    // directory image. Damaged metadata counts as missing.
    bool has(std::string_view path);

    struct Impl;
    friend void serve(SquashFile& file, const std::function<Fd()>& receive_device,
                      const ServeOptions& opts,
                      const std::function<void(const std::string& error)>& ready);

private:
    explicit SquashFile(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};


// How many threads serve() uses for max_threads = 0: twice the CPUs in this
// process's affinity mask, at least 4 and at most 64 (reads wait for I/O and
// decompress; a rank bound to one core still gets a few).
unsigned default_server_threads(unsigned cpus);

// How many threads inflate blocks ahead of the reads (prefetch): one per CPU
// of the affinity mask but one, at most 8. A process bound to one CPU (an
// MPI rank) gets none: guesses would only take time from its reads.
unsigned default_prefetch_threads(unsigned cpus);

// Serve FUSE requests on the /dev/fuse descriptor that receive_device
// returns (opened and mounted by the caller; an empty Fd means there will be
// none: serve() then returns), until the kernel ends the connection, which
// happens when the mount goes away with the last process of its mount
// namespace. Everything else is set up before receive_device is called, so
// that it overlaps with the mounting. Calls ready("") once requests will be
// answered, or ready(reason) if they can't be (then returns). Starts
// threads: the calling process must never unshare(CLONE_NEWUSER)
// afterwards. Takes over file's libsquashfuse instance as the first of its
// pool.
void serve(SquashFile& file, const std::function<Fd()>& receive_device, const ServeOptions& opts,
           const std::function<void(const std::string& error)>& ready);

} // namespace ch::image

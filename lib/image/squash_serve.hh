// squash_serve.hh: a SquashFS image file served read-only over FUSE, in
// process: the image read and checked by squash_image.hh (libsquashfs and
// libdeflate), served with libfuse3's low-level API by several threads. This
// file never mounts anything: ch-run mounts FUSE in its own mount namespace
// and hands the /dev/fuse descriptor to the process that calls serve()
// (lib/run/squash.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "util/fd.hh"

namespace ch::image {

namespace fs = std::filesystem;

// FUSE node ids from SquashFS inode references. A reference is where the
// inode sits in the inode table ((metadata block << 16) | offset, 48 bits),
// so it is unique. The root must be FUSE_ROOT_ID (1); every other id is
// shifted by 2, so 0 (invalid) and 1 are never produced. Pure arithmetic:
// the server's threads agree on every number without a shared table, and
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
// (Image::list resumes exactly there).
constexpr std::int64_t after_dot = 1;
constexpr std::int64_t after_dotdot = 2;

constexpr std::int64_t readdir_offset_after(std::int64_t listing_offset) {
    return listing_offset + 2;
}

constexpr std::int64_t listing_offset_of(std::int64_t readdir_offset) {
    return readdir_offset <= after_dotdot ? 0 : readdir_offset - 2;
}

// What a read of [off, off + len) (len > 0, off + len <= file_size) leaves
// of the first and the last block it touched, blocks being block_size bytes
// and the last one ending at file_size: the bytes before the read in its
// first block, and after it in its last. The server stores them in the
// kernel's page cache (FUSE_NOTIFY_STORE), as it has inflated those blocks
// whole anyway: the page faults that follow into the same blocks (the
// loader's into libc, say) then find them there and need no request.
struct FillRange {
    bool first = true;     // in the read's first block (else its last)
    std::uint64_t off = 0; // in the file
    std::size_t len = 0;   // never 0
};

std::vector<FillRange> fill_ranges(std::uint64_t off, std::size_t len, std::uint64_t file_size,
                                   std::uint32_t block_size);

// Pieces waiting to be stored in the page cache, at most (a few reads'
// worth, and a file's blocks already inflated on its first read).
constexpr std::size_t server_fill_queue = 64;

// The server's cache of inflated data and fragment blocks, and the image's
// cache of metadata blocks (squash_image.hh), in bytes. With the tables the
// image keeps (at most a few MiB: squash_image.hh's limits), they bound what
// the server holds whatever the image; man/ch-run.1 gives the total.
constexpr std::size_t server_cache_bytes = std::size_t{32} << 20;
constexpr std::size_t server_meta_cache_bytes = std::size_t{4} << 20;
// The block lists of the files read lately (the kernel opens files without
// telling the server, so reads find them here): the largest list an image
// may declare (squash::max_file_blocks, 4 bytes each, and the index of
// every 64th block's start) fits alone.
constexpr std::size_t server_file_cache_bytes = std::size_t{17} << 20;

struct ServeOptions {
    uid_t uid = 0; // owner of every file, in the mounting user namespace
    gid_t gid = 0;
    unsigned max_threads = 0; // 0: from the CPUs this process may run on
    bool debug = false;       // libfuse logs every request (at -vvv)
    // The container's first program (argv[0]) and the PATH it is looked for
    // in: its loader and libraries are inflated ahead (squash_warm.hh).
    // Empty: nothing is.
    std::string warm_command;
    std::string warm_path;
};

// An opened and checked SquashFS file, for ch-run: the image (read only
// through squash_image.hh) and its path.
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

// How many threads serve() may use for max_threads = 0: twice the CPUs in
// this process's affinity mask, at least 4 and at most 64 (reads wait for
// I/O and decompress; a rank bound to one core still gets a few). Only one
// serves until requests queue up behind it.
unsigned default_server_threads(unsigned cpus);

// How many threads inflate blocks ahead of the reads (prefetch), at idle
// priority: one per CPU of the affinity mask but two, at most 8. Guesses
// cost CPU time, and whether a CPU is free to pay for them can't be known
// cheaply: SCHED_IDLE yields only to tasks of the same cgroup, and on a
// 2-CPU machine shared with other sessions the guesses for
// `ch-run IMG.sqfs -- /bin/true` cost 12% more CPU time for the whole start
// (one wrong guess in four). So a process bound to one or two CPUs (an MPI
// rank, a small VM) guesses nothing; one on a larger node leaves two CPUs to
// the reader and the server, and guesses on the rest.
unsigned default_prefetch_threads(unsigned cpus);

// Serve FUSE requests on the /dev/fuse descriptor that receive_device
// returns (opened and mounted by the caller; an empty Fd means there will be
// none: serve() then returns), until the kernel ends the connection, which
// happens when the mount goes away with the last process of its mount
// namespace. Everything else is set up before receive_device is called, so
// that it overlaps with the mounting. Calls ready("") once requests will be
// answered, or ready(reason) if they can't be (then returns). Starts
// threads: the calling process must never unshare(CLONE_NEWUSER)
// afterwards. A flaw found while serving costs that request EIO, nothing
// more.
void serve(SquashFile& file, const std::function<Fd()>& receive_device, const ServeOptions& opts,
           const std::function<void(const std::string& error)>& ready);

} // namespace ch::image

// fd.hh: file descriptors as owned values, and walks that stay inside a root.
// Every descriptor is opened O_CLOEXEC: ch-run ends in execvp, where no
// destructor runs, so anything inheritable would leak into the container.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace ch {

namespace fs = std::filesystem;

class Fd {
public:
    Fd() = default;

    explicit Fd(int fd) noexcept
        : fd_(fd) {}

    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

    Fd(Fd&& other) noexcept
        : fd_(std::exchange(other.fd_, -1)) {}

    Fd& operator=(Fd&& other) noexcept {
        reset(std::exchange(other.fd_, -1));
        return *this;
    }

    ~Fd() { reset(); }

    int get() const noexcept { return fd_; }

    explicit operator bool() const noexcept { return fd_ >= 0; }

    int release() noexcept { return std::exchange(fd_, -1); }

    // close(2) once; Linux releases the descriptor even when close fails with
    // EINTR, so retrying could close someone else's.
    void reset(int fd = -1) noexcept;
    // "/proc/self/fd/N": lets mount(2) and friends act on exactly this file.
    std::string proc_path() const;

private:
    int fd_ = -1;
};

// C handles freed by one function: std::unique_ptr<archive, FreeWith<archive_read_free>>.
template <auto Fn>
struct FreeWith {
    template <typename T>
    void operator()(T* p) const noexcept {
        if (p)
            Fn(p);
    }
};

// openat(2) with O_CLOEXEC added; throws SysError "can't open PATH: reason".
Fd open_at(int dirfd, const fs::path& path, int flags, mode_t mode = 0);
// Same, but returns an empty Fd (errno set) instead of throwing.
Fd try_open_at(int dirfd, const fs::path& path, int flags, mode_t mode = 0);

// Close every descriptor from 3 up except those in keep (for a process that
// outlives its parent and must not hold the parent's pipes open). Uses
// close_range(2) (Linux 5.9) where it exists, else /proc/self/fd.
void close_fds_except(std::vector<int> keep);

// Read a whole (small) file; throws "can't read PATH: reason".
// Everything fd holds, up to max_bytes (more is an error naming what).
std::string read_all(int fd, std::string_view what,
                     std::size_t max_bytes = std::numeric_limits<std::size_t>::max());
std::string read_file(const fs::path& path);

// A regular file's bytes, mapped read-only rather than read: nothing is
// copied and no memory of ch-run's own is filled. A file that shrinks while
// mapped raises SIGBUS on access: map only files whose owner controls what
// ch-run does with them anyway (an image's own files).
class MappedFile {
public:
    MappedFile() = default;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    MappedFile(MappedFile&& o) noexcept
        : data_(std::exchange(o.data_, nullptr))
        , size_(std::exchange(o.size_, 0))
        , copy_(std::move(o.copy_)) {}

    MappedFile& operator=(MappedFile&& o) noexcept;
    ~MappedFile();

    // fd's bytes: a regular file of at most max_bytes, else nullopt with
    // errno EINVAL or EFBIG. Read instead (errors name what) where the
    // filesystem can't map it.
    static std::optional<MappedFile> map(int fd, std::size_t max_bytes, std::string_view what);

    std::string_view view() const noexcept {
        return data_ ? std::string_view(static_cast<const char*>(data_), size_) : copy_;
    }

    // Leaves the mapping in place for execve(2) to drop with the rest of the
    // address space: on a paravirtualised guest a munmap (its TLB flush)
    // costs as much as reading the file (80 us here). Only for a process
    // about to exec, such as ch-run.
    void keep_until_exec() noexcept { data_ = nullptr; }

private:
    void* data_ = nullptr; // what mmap returned, size_ bytes
    std::size_t size_ = 0;
    std::string copy_;
};

// Write all of data to fd; throws "can't write WHAT: reason".
void write_all(int fd, std::string_view data, std::string_view what);

// How resolve_in_root treats the last component when it is a symlink.
enum class FollowLast { yes, no };

// Open path (absolute or relative, interpreted inside root) as an O_PATH
// descriptor, resolving every symlink and ".." as if root were "/": nothing
// can lead outside root. Uses openat2(RESOLVE_IN_ROOT) where the kernel has it
// (Linux 5.6+), else a component-by-component walk. Returns an empty Fd with
// errno set when a component is missing or unreadable.
Fd resolve_in_root(int rootfd, std::string_view path, FollowLast follow = FollowLast::yes);
// The portable walk alone, so tests can cover it on kernels that have openat2.
Fd resolve_in_root_walk(int rootfd, std::string_view path, FollowLast follow = FollowLast::yes);

// Like resolve_in_root, but creates missing directories (mode 0755) on the
// way; if last_is_file, the last component is created as an empty file
// instead. Creates only on rootfd's own mount: where the walk would have to
// create under another mount (a bind inside root, reached directly or through
// a symlink), it throws Error naming that mount point. Throws SysError naming
// path for other failures.
Fd make_in_root(int rootfd, std::string_view path, bool last_is_file);

// The id of the mount fd is on (statx STATX_MNT_ID from Linux 5.8, else
// /proc/self/fdinfo); nullopt if neither says.
std::optional<std::uint64_t> mount_id(int fd);
// The fdinfo way alone, so tests can cover it on kernels with statx's.
std::optional<std::uint64_t> mount_id_from_fdinfo(int fd);

// Lexically normalise an in-image path: collapse "//", ".", and ".." (which
// stops at the root). The result is absolute.
std::string normalize_abs(std::string_view path);

} // namespace ch

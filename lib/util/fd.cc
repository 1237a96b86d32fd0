// fd.cc: see fd.hh. The walk here is what keeps a hostile image from steering
// a bind mount onto a host path through a symlink, so it never opens ".." and
// never follows a link without re-rooting it.
#include "util/fd.hh"

#include <algorithm>
#include <cerrno>
#include <deque>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/error.hh"

namespace ch {

void Fd::reset(int fd) noexcept {
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = fd;
}

std::string Fd::proc_path() const {
    return cat("/proc/self/fd/", fd_);
}

Fd try_open_at(int dirfd, const fs::path& path, int flags, mode_t mode) {
    return Fd(::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode));
}

Fd open_at(int dirfd, const fs::path& path, int flags, mode_t mode) {
    Fd fd = try_open_at(dirfd, path, flags, mode);
    if (!fd)
        throw_errno("can't open ", path.string());
    return fd;
}

void close_fds_except(std::vector<int> keep) {
    std::sort(keep.begin(), keep.end());
    // close_range over the gaps between the descriptors to keep.
    auto close_from_to = [](unsigned lo, unsigned hi) {
        return lo > hi || ::syscall(SYS_close_range, lo, hi, 0) == 0;
    };
    unsigned next = 3;
    bool have_close_range = true;
    for (const int k : keep) {
        if (k < 3 || static_cast<unsigned>(k) < next)
            continue;
        have_close_range = have_close_range && close_from_to(next, static_cast<unsigned>(k) - 1);
        next = static_cast<unsigned>(k) + 1;
    }
    have_close_range = have_close_range && close_from_to(next, ~0U); // ENOSYS before Linux 5.9
    if (have_close_range)
        return;
    // The portable way: list the open descriptors first, then close them
    // (closing while reading the directory would skip entries).
    std::vector<int> open_fds;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (const struct dirent* e = ::readdir(d)) {
            unsigned long long n = 0;
            if (parse_uint(e->d_name, 1U << 30, n) && n >= 3 && static_cast<int>(n) != ::dirfd(d))
                open_fds.push_back(static_cast<int>(n));
        }
        ::closedir(d);
    }
    for (const int fd : open_fds)
        if (!std::binary_search(keep.begin(), keep.end(), fd))
            ::close(fd);
}

std::string read_all(int fd, std::string_view what, std::size_t max_bytes) {
    // A regular file's size says how much to ask for: one read, not one per
    // 8 KiB (ch-run reads an image's ld.so.cache at every --inject start).
    std::size_t chunk = 8192;

    struct stat st {};

    const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (regular && st.st_size > 0)
        chunk = static_cast<std::size_t>(
                    std::min<std::uint64_t>(static_cast<std::uint64_t>(st.st_size), max_bytes)) +
                1;
    std::string out;
    bool came_short = false;
    while (true) {
        const std::size_t at = out.size();
        // After a short read of a regular file (all that fstat promised) the
        // read that finds the end goes to a small buffer: growing the string for it would
        // copy the whole file.
        char probe[512];
        const bool probing = came_short;
        if (!probing)
            out.resize(at + chunk);
        const ssize_t n =
            probing ? ::read(fd, probe, sizeof probe) : ::read(fd, out.data() + at, chunk);
        if (n < 0) {
            out.resize(at);
            if (errno == EINTR)
                continue;
            throw_errno("can't read ", what);
        }
        if (probing)
            out.append(probe, static_cast<std::size_t>(n));
        else
            out.resize(at + static_cast<std::size_t>(n));
        if (n == 0)
            return out;
        if (out.size() > max_bytes)
            fail("can't read ", what, ": more than the ", max_bytes, " bytes allowed");
        came_short = regular && !probing && static_cast<std::size_t>(n) < chunk;
        chunk = 8192;
    }
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
    if (this != &o) {
        if (data_)
            ::munmap(data_, size_);
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
        copy_ = std::move(o.copy_);
    }
    return *this;
}

MappedFile::~MappedFile() {
    if (data_)
        ::munmap(data_, size_);
}

std::optional<MappedFile> MappedFile::map(int fd, std::size_t max_bytes, std::string_view what) {
    struct stat st {};

    if (::fstat(fd, &st) != 0)
        return std::nullopt;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        return std::nullopt;
    }
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
        errno = EFBIG;
        return std::nullopt;
    }
    MappedFile m;
    if (st.st_size == 0)
        return m;
    const auto n = static_cast<std::size_t>(st.st_size);
    void* p = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        m.copy_ = read_all(fd, what, max_bytes);
        return m;
    }
    m.data_ = p;
    m.size_ = n;
    return m;
}

std::string read_file(const fs::path& path) {
    const Fd fd = open_at(AT_FDCWD, path, O_RDONLY);
    return read_all(fd.get(), path.string());
}

void write_all(int fd, std::string_view data, std::string_view what) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw_errno("can't write ", what);
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

namespace {

std::string_view trim_left(std::string_view s) {
    while (!s.empty() && (s[0] == ' ' || s[0] == '\t'))
        s.remove_prefix(1);
    return s;
}

constexpr int max_symlinks = 40; // the kernel's own limit (MAXSYMLINKS)

std::deque<std::string> components(std::string_view path) {
    std::deque<std::string> out;
    for (auto& c : split(path, '/'))
        if (!c.empty() && c != ".")
            out.push_back(std::move(c));
    return out;
}

std::string read_link_at(int fd) {
    std::string target(256, '\0');
    while (true) {
        const ssize_t n = ::readlinkat(fd, "", target.data(), target.size());
        if (n < 0)
            return {};
        if (static_cast<std::size_t>(n) < target.size()) {
            target.resize(static_cast<std::size_t>(n));
            return target;
        }
        target.resize(target.size() * 2);
    }
}

// Where a walk that would create c in the current directory leaves root's
// mount: "" if it doesn't, else the first directory on the way (as a path
// inside root) that is on another mount.
std::string crossed_mount(int rootfd, const std::vector<Fd>& stack,
                          const std::vector<std::string>& names) {
    const auto root_mnt = mount_id(rootfd);
    if (!root_mnt || stack.empty() || mount_id(stack.back().get()) == root_mnt)
        return {};
    for (std::size_t i = 0; i < stack.size(); i++)
        if (mount_id(stack[i].get()) != root_mnt)
            return "/" + join({names.begin(), names.begin() + static_cast<long>(i) + 1}, "/");
    return "/" + join(names, "/"); // not reached: the last one differs
}

// The shared walk. With create set, missing components are made (directories,
// or an empty file for the last one if last_is_file), but only on root's own
// mount: *crossed then names the mount point that stopped it (errno EXDEV).
Fd walk(int rootfd, std::string_view path, FollowLast follow, bool create, bool last_is_file,
        std::string* crossed = nullptr) {
    // The stack holds the directories from root down to the current one, so
    // ".." pops instead of opening "..": a walk can't climb out of root.
    // names[i] is stack[i]'s name, for messages.
    std::vector<Fd> stack;
    std::vector<std::string> names;
    auto current = [&]() {
        return stack.empty() ? rootfd : stack.back().get();
    };
    std::deque<std::string> todo = components(path);
    int links = 0;
    while (!todo.empty()) {
        const std::string c = std::move(todo.front());
        todo.pop_front();
        const bool last = todo.empty();
        if (c == "..") {
            if (!stack.empty()) {
                stack.pop_back();
                names.pop_back();
            }
            continue;
        }
        Fd next(::openat(current(), c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!next && errno == ENOENT && create) {
            // Creating through another mount (a bind of a host directory)
            // would create on the host; only root's own mount is ours to change.
            if (std::string mp = crossed_mount(rootfd, stack, names); !mp.empty()) {
                if (crossed != nullptr)
                    *crossed = cat("can't create /", join(names, "/"), names.empty() ? "" : "/", c,
                                   " under the mount at ", mp);
                errno = EXDEV;
                return Fd();
            }
            int rc = 0;
            if (last && last_is_file) {
                rc = ::openat(current(), c.c_str(),
                              O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (rc >= 0)
                    ::close(rc);
            } else {
                rc = ::mkdirat(current(), c.c_str(), 0755);
            }
            if (rc < 0 && errno != EEXIST)
                return Fd();
            next = Fd(::openat(current(), c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        }
        if (!next)
            return Fd();

        struct stat st {};

        if (::fstat(next.get(), &st) != 0)
            return Fd();
        if (S_ISLNK(st.st_mode) && (!last || follow == FollowLast::yes)) {
            if (++links > max_symlinks) {
                errno = ELOOP;
                return Fd();
            }
            const std::string target = read_link_at(next.get());
            if (target.empty()) {
                errno = ENOENT;
                return Fd();
            }
            if (target[0] == '/') { // absolute targets restart at root, not at the host's /
                stack.clear();
                names.clear();
            }
            auto more = components(target);
            todo.insert(todo.begin(), more.begin(), more.end());
            continue;
        }
        if (!last && !S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return Fd();
        }
        stack.push_back(std::move(next));
        names.push_back(c);
    }
    if (stack.empty()) // the path named root itself
        return Fd(::openat(rootfd, ".", O_PATH | O_CLOEXEC));
    return std::move(stack.back());
}

} // namespace

Fd resolve_in_root_walk(int rootfd, std::string_view path, FollowLast follow) {
    return walk(rootfd, path, follow, false, false);
}

Fd resolve_in_root(int rootfd, std::string_view path, FollowLast follow) {
    static bool have_openat2 = true;
    if (have_openat2) {
        struct open_how how {};

        how.flags = O_PATH | O_CLOEXEC | (follow == FollowLast::no ? O_NOFOLLOW : 0);
        how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        const std::string rel = path.empty() ? std::string(".") : std::string(path);
        for (int tries = 0; tries < 8; tries++) {
            const long fd = ::syscall(SYS_openat2, rootfd, rel.c_str(), &how, sizeof how);
            if (fd >= 0)
                return Fd(static_cast<int>(fd));
            if (errno == EAGAIN) // a rename raced the lookup; the kernel asks us to retry
                continue;
            if (errno == ENOSYS || errno == EPERM) { // missing, or refused by a seccomp filter
                have_openat2 = false;
                break;
            }
            return Fd();
        }
    }
    return resolve_in_root_walk(rootfd, path, follow);
}

Fd make_in_root(int rootfd, std::string_view path, bool last_is_file) {
    std::string crossed;
    Fd fd = walk(rootfd, path, FollowLast::yes, true, last_is_file, &crossed);
    if (!fd && !crossed.empty())
        throw Error(crossed);
    if (!fd)
        throw_errno("can't create ", path);
    return fd;
}

std::optional<std::uint64_t> mount_id_from_fdinfo(int fd) {
    try {
        for (const auto& line : split(read_file(cat("/proc/self/fdinfo/", fd)), '\n')) {
            unsigned long long id = 0;
            if (line.starts_with("mnt_id:") && parse_uint(trim_left(line.substr(7)), ~0ULL, id))
                return id;
        }
    } catch (const Error&) {
    }
    return std::nullopt;
}

std::optional<std::uint64_t> mount_id(int fd) {
    static bool have_statx_mnt_id = true;
    if (have_statx_mnt_id) {
        struct statx stx {};

        // AT_STATX_DONT_SYNC: on FUSE, no round trip to the server for attributes not asked for.
        if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_MNT_ID,
                    &stx) == 0 &&
            (stx.stx_mask & STATX_MNT_ID) != 0)
            return stx.stx_mnt_id;
        have_statx_mnt_id = false; // before Linux 5.8
    }
    return mount_id_from_fdinfo(fd);
}

namespace {

// Absolute with no "", "." or ".." component and no trailing "/" (what
// configuration files and command lines nearly always give): normalize_abs
// returns it as it is, with no split and join (ch-run --inject normalises
// every injected path at each start).
bool is_normal_abs(std::string_view p) {
    if (p.empty() || p[0] != '/')
        return false;
    if (p.size() == 1)
        return true;
    for (std::size_t at = 1;;) {
        const std::size_t end = p.find('/', at);
        const std::string_view c = p.substr(at, end == std::string_view::npos ? end : end - at);
        if (c.empty() || c == "." || c == "..")
            return false;
        if (end == std::string_view::npos)
            return true;
        at = end + 1;
    }
}

} // namespace

std::string normalize_abs(std::string_view path) {
    if (is_normal_abs(path))
        return std::string(path);
    std::vector<std::string> out;
    for (auto& c : components(path)) {
        if (c == "..") {
            if (!out.empty())
                out.pop_back();
        } else {
            out.push_back(std::move(c));
        }
    }
    return "/" + join(out, "/");
}

} // namespace ch

// tree.cc: see tree.hh. Every step goes through descriptors: entries are
// examined with fstatat(AT_SYMLINK_NOFOLLOW), directories opened with
// O_NOFOLLOW, and modes changed with fchmod on what was opened. The walk
// climbs back with "..", checked against the device and inode it left, so
// only the current directory's descriptor is held open.
#include "util/tree.hh"

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.hh"

namespace ch {

std::vector<std::string> list_dir(int dirfd, const std::string& shown) {
    // fdopendir takes over its descriptor, so give it a fresh one.
    const int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        throw_errno("can't open ", shown);
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
        ::close(fd);
        throw_errno("can't read ", shown);
    }
    std::vector<std::string> names;
    errno = 0;
    while (const struct dirent* de = ::readdir(d)) {
        const std::string_view n = de->d_name;
        if (n != "." && n != "..")
            names.emplace_back(n);
        errno = 0;
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) {
        errno = err;
        throw_errno("can't read ", shown);
    }
    std::sort(names.begin(), names.end());
    return names;
}

Fd open_dir_to_remove(int dirfd, const std::string& name, const std::string& shown) {
    Fd fd = try_open_at(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!fd && errno == EACCES) {
        // Unreadable by its owner (mode 0300, 0000): O_RDONLY can't open
        // it, and fchmod can't use an O_PATH descriptor, so change the mode
        // through /proc/self/fd, which names exactly the inode opened, then
        // open that inode again.
        const Fd path = try_open_at(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW);

        struct stat st {};

        if (!path || ::fstat(path.get(), &st) != 0)
            throw_errno("can't open ", shown);
        if (::chmod(path.proc_path().c_str(), (st.st_mode & 07777) | 0700) != 0)
            throw_errno("can't make ", shown, " writable to remove it");
        fd = try_open_at(AT_FDCWD, path.proc_path(), O_RDONLY | O_DIRECTORY);
    }
    if (!fd) {
        if (errno == ELOOP || errno == ENOTDIR) { // a symlink or not a directory (maybe swapped in)
            errno = ENOTDIR;
            return fd;
        }
        throw_errno("can't open ", shown);
    }

    struct stat st {};

    if (::fstat(fd.get(), &st) != 0)
        throw_errno("can't stat ", shown);
    // If this fails (not ours), removing the entries below says why.
    if ((st.st_mode & 0700) != 0700)
        (void)::fchmod(fd.get(), (st.st_mode & 07777) | 0700);
    return fd;
}

namespace {

// Remove name under dirfd if it is not a directory. Returns true if it was
// removed (or was already gone), false if it is a directory.
bool remove_if_not_dir(int dirfd, const std::string& name, const std::string& shown) {
    struct stat st {};

    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return true;
        throw_errno("can't remove ", shown);
    }
    if (S_ISDIR(st.st_mode))
        return false;
    if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT)
        throw_errno("can't remove ", shown);
    return true;
}

} // namespace

void empty_dir(Fd dir, const std::string& shown, const TreeHook& hook) {
    struct Frame {
        std::string name; // in its parent
        std::vector<std::string> names;
        std::size_t next = 0;
        dev_t dev = 0;
        ino_t ino = 0;
    };

    std::vector<Frame> stack;
    Fd cur = std::move(dir);
    // Only for messages: the path of name below the top.
    auto where = [&](const std::string& name) {
        std::string s = shown;
        for (std::size_t i = 1; i < stack.size(); i++)
            s += "/" + printable(stack[i].name);
        return name.empty() ? s : s + "/" + printable(name);
    };
    auto enter = [&](std::string name) {
        struct stat st {};
        if (::fstat(cur.get(), &st) != 0)
            throw_errno("can't stat ", where(name));
        std::vector<std::string> names = list_dir(cur.get(), where(name));
        stack.push_back({std::move(name), std::move(names), 0, st.st_dev, st.st_ino});
    };
    enter("");
    while (true) {
        Frame& f = stack.back();
        if (f.next < f.names.size()) {
            const std::string n = f.names[f.next++];
            if (remove_if_not_dir(cur.get(), n, where(n)))
                continue;
            if (hook)
                hook(n);
            Fd sub = open_dir_to_remove(cur.get(), n, where(n));
            if (!sub) { // swapped for a non-directory since fstatat
                if (!remove_if_not_dir(cur.get(), n, where(n)))
                    fail("can't remove ", where(n), ": it changed while being removed");
                continue;
            }
            cur = std::move(sub);
            enter(n); // invalidates f
            continue;
        }
        if (stack.size() == 1)
            return;
        // Climb back, and make sure ".." is the directory we came from: if
        // this one was moved meanwhile, stop rather than remove elsewhere.
        const std::string name = f.name;
        const std::string shown_here = where("");
        Fd up = try_open_at(cur.get(), "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

        struct stat st {};

        if (!up || ::fstat(up.get(), &st) != 0)
            throw_errno("can't open the parent of ", shown_here);
        stack.pop_back();
        if (st.st_dev != stack.back().dev || st.st_ino != stack.back().ino)
            fail("can't remove ", shown_here, ": it was moved while being removed");
        cur = std::move(up);
        if (::unlinkat(cur.get(), name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
            throw_errno("can't remove ", shown_here);
    }
}

void remove_tree_at(int dirfd, const std::string& name, const TreeHook& hook) {
    const std::string shown = printable(name);
    if (remove_if_not_dir(dirfd, name, shown))
        return;
    if (hook)
        hook(name);
    Fd fd = open_dir_to_remove(dirfd, name, shown);
    if (!fd) {
        if (!remove_if_not_dir(dirfd, name, shown))
            fail("can't remove ", shown, ": it changed while being removed");
        return;
    }
    empty_dir(std::move(fd), shown, hook);
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
        throw_errno("can't remove ", shown);
}

void remove_tree(const std::filesystem::path& path, const TreeHook& hook) {
    const auto parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    const Fd dir = try_open_at(AT_FDCWD, parent, O_RDONLY | O_DIRECTORY);
    if (!dir) {
        if (errno == ENOENT)
            return;
        throw_errno("can't remove ", path.string());
    }
    try {
        remove_tree_at(dir.get(), path.filename().string(), hook);
    } catch (Error& e) {
        e.add_context(cat("can't remove ", path.string()));
        throw;
    }
}

} // namespace ch

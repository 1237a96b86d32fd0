// tree.cc: see tree.hh. Iterative over descriptors (openat with O_NOFOLLOW),
// so a symlink swapped in during removal can't redirect it.
#include "util/tree.hh"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "util/error.hh"
#include "util/fd.hh"

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

namespace {

void empty_dir(int dirfd, const std::string& shown) {
    for (const auto& name : list_dir(dirfd, shown))
        remove_tree_at(dirfd, name);
}

} // namespace

void remove_tree_at(int dirfd, const std::string& name) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return;
        throw_errno("can't remove ", name);
    }
    if (!S_ISDIR(st.st_mode)) {
        if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT)
            throw_errno("can't remove ", name);
        return;
    }
    // If this fails, opening or emptying the directory below says why.
    if ((st.st_mode & 0700) != 0700 && ::fchmodat(dirfd, name.c_str(), (st.st_mode & 07777) | 0700, 0) != 0)
        errno = 0;
    {
        const Fd sub = open_at(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        empty_dir(sub.get(), name);
    }
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
        throw_errno("can't remove ", name);
}

void remove_tree(const std::filesystem::path& path) {
    const auto parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    const Fd dir = try_open_at(AT_FDCWD, parent, O_RDONLY | O_DIRECTORY);
    if (!dir) {
        if (errno == ENOENT)
            return;
        throw_errno("can't remove ", path.string());
    }
    try {
        remove_tree_at(dir.get(), path.filename().string());
    } catch (Error& e) {
        e.add_context(cat("can't remove ", path.string()));
        throw;
    }
}

} // namespace ch

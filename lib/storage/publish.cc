// publish.cc: see publish.hh. Every name used here is made by
// staging_name(); every change to what the sweep finds goes through a
// descriptor whose owner was checked first.
#include "storage/publish.hh"

#include <atomic>
#include <cerrno>

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.hh"
#include "util/log.hh"
#include "util/tree.hh"

namespace ch::storage {

namespace {

constexpr std::string_view marker = ".ch-staging.";

fs::path parent_of(const fs::path& p) {
    return p.has_parent_path() ? p.parent_path() : fs::path(".");
}

// Open a staging entry for the sweep without following a symlink, and only
// if uid owns it. A directory its owner can't read is made readable, through
// the descriptor, only after the owner check. Empty Fd if it is not ours or
// not a file or directory.
Fd open_own_entry(int dirfd, const std::string& name, uid_t uid, struct stat& st) {
    Fd fd = try_open_at(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    Fd path;
    if (!fd && errno == EACCES)
        path = try_open_at(dirfd, name, O_PATH | O_NOFOLLOW);
    const int any = fd ? fd.get() : path.get();
    if (any < 0 || ::fstat(any, &st) != 0)
        return {};
    if (st.st_uid != uid) {
        log::debug("not sweeping ", printable(name), ": owned by uid ", st.st_uid, ", not ", uid);
        return {};
    }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return {};
    if (!fd) { // ours but unreadable (only a directory can get here usefully)
        if (!S_ISDIR(st.st_mode) ||
            ::chmod(path.proc_path().c_str(), (st.st_mode & 07777) | 0700) != 0)
            return {};
        fd = try_open_at(AT_FDCWD, path.proc_path(), O_RDONLY | O_DIRECTORY);
    }
    return fd;
}

} // namespace

std::string staging_name(std::string_view dest_name, pid_t pid, unsigned serial) {
    return cat(".", dest_name, marker, pid, ".", serial);
}

bool is_staging_name(std::string_view n) {
    return n.size() > 1 && n[0] == '.' && n.find(marker) != std::string_view::npos;
}

void sweep_staging(const fs::path& dir, const SweepHook& hook) {
    const Fd dfd = try_open_at(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
    if (!dfd)
        return;
    std::vector<std::string> names;
    try {
        names = list_dir(dfd.get(), dir.string());
    } catch (const Error&) {
        return;
    }
    const uid_t me = ::geteuid();
    TreeHook tree_hook;
    if (hook)
        tree_hook = [&](const std::string& n) {
            hook("open-dir", n);
        };
    for (const auto& n : names) {
        if (!is_staging_name(n))
            continue;
        const std::string shown = (dir / n).string();
        if (hook)
            hook("open", n);

        struct stat st {};

        Fd fd = open_own_entry(dfd.get(), n, me, st);
        // The owner holds an flock on the staging path itself while it works.
        if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
            continue;
        try {
            if (hook)
                hook("remove", n);
            if (S_ISDIR(st.st_mode)) {
                if ((st.st_mode & 0700) != 0700 &&
                    ::fchmod(fd.get(), (st.st_mode & 07777) | 0700) != 0)
                    throw_errno("can't make ", shown, " writable");
                // Empty what was checked (a duplicate, so the lock is held
                // until the end), then remove the name if it is still a
                // directory: rmdir neither follows a symlink nor removes a
                // non-empty directory swapped in meanwhile.
                Fd dup(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
                if (!dup)
                    throw_errno("can't duplicate a descriptor");
                empty_dir(std::move(dup), shown, tree_hook);
                if (::unlinkat(dfd.get(), n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
                    throw_errno("can't remove ", shown);
            } else if (::unlinkat(dfd.get(), n.c_str(), 0) != 0 && errno != ENOENT) {
                throw_errno("can't remove ", shown);
            }
            log::verbose("removed staging debris of a killed process: ", shown);
        } catch (const Error& e) {
            log::warning("can't remove staging debris: ", e.what());
        }
    }
}

Staged::Staged(const fs::path& dest, StagedKind kind)
    : dest_(dest)
    , kind_(kind) {
    static std::atomic<unsigned> serial{0};
    const fs::path dir = parent_of(dest);
    sweep_staging(dir);
    staging_ = dir / staging_name(dest.filename().string(), ::getpid(), serial++);
    if (kind == StagedKind::dir) {
        if (::mkdir(staging_.c_str(), 0700) != 0)
            throw_errno("can't create staging directory ", staging_.string());
        lock_ = open_at(AT_FDCWD, staging_, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    } else {
        lock_ = open_at(AT_FDCWD, staging_, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
    }
    if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0)
        throw_errno("can't lock ", staging_.string());
}

Staged::~Staged() {
    if (published_)
        return;
    try {
        remove_tree(staging_);
    } catch (const Error& e) {
        log::warning(e.what());
    }
}

void Staged::publish() {
    if (kind_ == StagedKind::dir) {
        // Directories get a final mode the user expects; staging was 0700.
        if (::fchmod(lock_.get(), 0755) != 0)
            throw_errno("can't chmod ", staging_.string());
        if (::rename(staging_.c_str(), dest_.c_str()) != 0) {
            if (errno != EEXIST && errno != ENOTEMPTY && errno != EISDIR && errno != ENOTDIR)
                throw_errno("can't move ", staging_.string(), " to ", dest_.string());
            // Swap the new tree in atomically, then remove the old one, which
            // now sits at the staging path (still locked by us).
            if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, dest_.c_str(), RENAME_EXCHANGE) !=
                0)
                throw_errno("can't replace ", dest_.string());
            published_ = true;
            try {
                remove_tree(staging_);
            } catch (const Error& e) {
                log::warning("can't remove the replaced ", dest_.string(), ": ", e.what());
            }
            return;
        }
    } else {
        if (::fsync(lock_.get()) != 0)
            throw_errno("can't sync ", staging_.string());
        if (::rename(staging_.c_str(), dest_.c_str()) != 0)
            throw_errno("can't move ", staging_.string(), " to ", dest_.string());
    }
    published_ = true;
}

} // namespace ch::storage

// publish.cc: see publish.hh.
#include "storage/publish.hh"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "util/error.hh"
#include "util/log.hh"
#include "util/tree.hh"

namespace ch::storage {

namespace {

constexpr const char* marker = ".ch-staging.";

fs::path parent_of(const fs::path& p) {
    return p.has_parent_path() ? p.parent_path() : fs::path(".");
}

bool is_staging_name(const std::string& n) {
    return n.size() > 1 && n[0] == '.' && n.find(marker) != std::string::npos;
}

} // namespace

void sweep_staging(const fs::path& dir) {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr)
        return;
    std::vector<std::string> names;
    while (const struct dirent* de = ::readdir(d))
        if (is_staging_name(de->d_name))
            names.emplace_back(de->d_name);
    ::closedir(d);
    for (const auto& n : names) {
        const fs::path p = dir / n;
        // The owner holds an flock on the staging path itself while it works.
        const Fd fd = try_open_at(AT_FDCWD, p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
        if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
            continue;
        try {
            remove_tree(p);
            log::verbose("removed staging debris of a killed process: ", p.string());
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
    staging_ = dir / cat(".", dest.filename().string(), marker, ::getpid(), ".", serial++);
    if (kind == StagedKind::dir) {
        if (::mkdir(staging_.c_str(), 0700) != 0)
            throw_errno("can't create staging directory ", staging_.string());
        lock_ = open_at(AT_FDCWD, staging_, O_RDONLY | O_DIRECTORY);
    } else {
        lock_ = open_at(AT_FDCWD, staging_, O_WRONLY | O_CREAT | O_EXCL, 0644);
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
        if (::chmod(staging_.c_str(), 0755) != 0)
            throw_errno("can't chmod ", staging_.string());
        if (::rename(staging_.c_str(), dest_.c_str()) != 0) {
            if (errno != EEXIST && errno != ENOTEMPTY && errno != EISDIR && errno != ENOTDIR)
                throw_errno("can't move ", staging_.string(), " to ", dest_.string());
            // Swap the new tree in atomically, then remove the old one, which
            // now sits at the staging path (still locked by us).
            if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, dest_.c_str(), RENAME_EXCHANGE) != 0)
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

std::string why_not_replace(const fs::path& dest) {
    struct stat st {};
    if (::lstat(dest.c_str(), &st) != 0)
        return errno == ENOENT ? "" : cat("can't stat it: ", std::strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        std::error_code ec;
        if (fs::is_empty(dest, ec) && !ec)
            return "";
        auto has = [&](const char* d) { return fs::is_directory(dest / d, ec); };
        if ((has("bin") && has("dev") && has("usr")) || (has("etc") && has("ch")))
            return "";
        return "it is a directory that doesn't look like an image";
    }
    if (S_ISREG(st.st_mode)) {
        char head[512] = {};
        const Fd fd = try_open_at(AT_FDCWD, dest, O_RDONLY);
        const ssize_t n = fd ? ::pread(fd.get(), head, sizeof head, 0) : -1;
        if (n == 0)
            return "";
        if (n >= 4 && std::memcmp(head, "hsqs", 4) == 0)
            return "";
        const unsigned char* u = reinterpret_cast<const unsigned char*>(head);
        const bool gz = n >= 2 && u[0] == 0x1f && u[1] == 0x8b;
        const bool zst = n >= 4 && u[0] == 0x28 && u[1] == 0xb5 && u[2] == 0x2f && u[3] == 0xfd;
        const bool xz = n >= 6 && std::memcmp(head, "\xfd" "7zXZ", 5) == 0;
        const bool bz = n >= 3 && std::memcmp(head, "BZh", 3) == 0;
        const bool tar = n >= 262 && std::memcmp(head + 257, "ustar", 5) == 0;
        if (gz || zst || xz || bz || tar)
            return "";
        return "it is a file that is not an image archive";
    }
    return "it is not a regular file or directory";
}

} // namespace ch::storage

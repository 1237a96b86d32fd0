// source_dir.cc: a directory tree as a Source (also images in storage). The
// walk holds a descriptor per level and opens every name with O_NOFOLLOW
// relative to its parent, so a symlink in the tree is reported as a symlink
// and never walked into, and paths longer than PATH_MAX work.
#include <algorithm>
#include <cerrno>
#include <map>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image/formats.hh"
#include "image/unpack_rules.hh"
#include "storage/layout.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/tree.hh"

namespace ch::image {

namespace {

// user.* attributes of an open file or directory. Filesystems without
// xattrs simply have none.
// path is the entry's (for the limits' message), root the tree's.
std::vector<Xattr> read_user_xattrs(int fd, const std::string& shown, const std::string& path,
                                    const fs::path& root) {
    std::vector<Xattr> out;
    std::size_t bytes = 0;
    std::string names(1024, '\0');
    ssize_t n = 0;
    while ((n = ::flistxattr(fd, names.data(), names.size())) < 0) {
        if (errno == ENOTSUP)
            return out;
        if (errno != ERANGE)
            throw_errno("can't list extended attributes of ", shown);
        names.resize(names.size() * 4);
    }
    names.resize(static_cast<std::size_t>(n));
    for (const auto& name : split(names, '\0')) {
        if (!name.starts_with("user."))
            continue;
        std::string value(256, '\0');
        ssize_t m = 0;
        while ((m = ::fgetxattr(fd, name.c_str(), value.data(), value.size())) < 0) {
            if (errno == ENODATA) // removed meanwhile
                break;
            if (errno != ERANGE)
                throw_errno("can't read extended attribute ", name, " of ", shown);
            value.resize(value.size() * 4);
        }
        if (m < 0)
            continue;
        value.resize(static_cast<std::size_t>(m));
        bytes += name.size() + value.size();
        try {
            check_xattr_limits(path, out.size() + 1, bytes);
        } catch (Error& e) {
            e.add_context(cat("can't read ", root.string()));
            throw;
        }
        out.push_back({name, std::move(value)});
    }
    return out;
}

// The data regions of a file that has fewer blocks than its size suggests;
// nullopt if it is not sparse after all.
std::optional<std::vector<Extent>> find_extents(int fd, std::uint64_t size,
                                                const std::string& shown) {
    std::vector<Extent> out;
    off_t pos = 0;
    while (static_cast<std::uint64_t>(pos) < size) {
        const off_t data = ::lseek(fd, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) // only a hole from here on
                break;
            if (errno == EINVAL || errno == ENOTSUP) // no SEEK_DATA here: treat as dense
                return std::nullopt;
            throw_errno("can't find data regions of ", shown);
        }
        off_t hole = ::lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            throw_errno("can't find holes of ", shown);
        hole = std::min<off_t>(hole, static_cast<off_t>(size));
        if (hole > data)
            out.push_back(
                {static_cast<std::uint64_t>(data), static_cast<std::uint64_t>(hole - data)});
        pos = hole;
    }
    if (out.size() == 1 && out[0].offset == 0 && out[0].length == size)
        return std::nullopt;
    return out;
}

class DirSource final : public Source {
public:
    DirSource(fs::path root, bool xattrs, std::string described_as)
        : root_(std::move(root))
        , desc_(described_as.empty() ? root_.string() : std::move(described_as))
        , xattrs_(xattrs) {}

    bool next(Entry& e) override {
        file_.reset();
        if (!started_) {
            started_ = true;
            Fd fd = open_at(AT_FDCWD, root_, O_RDONLY | O_DIRECTORY);

            struct stat st {};

            if (::fstat(fd.get(), &st) != 0)
                throw_errno("can't stat ", root_.string());
            e = Entry{};
            fill(e, st, "");
            e.type = EntryType::dir;
            if (xattrs_)
                e.xattrs = read_user_xattrs(fd.get(), root_.string(), "", root_);
            push(std::move(fd), "");
            return true;
        }
        while (!stack_.empty()) {
            Frame& f = stack_.back();
            if (f.next == f.names.size()) {
                stack_.pop_back();
                continue;
            }
            const std::string name = f.names[f.next++];
            const std::string path = f.path.empty() ? name : f.path + "/" + name;
            visit(f.fd.get(), name, path, e); // may push a frame: f is not used after this

            return true;
        }
        return false;
    }

    std::size_t read(void* buf, std::size_t n) override {
        if (!file_ || remaining_ == 0)
            return 0;
        n = static_cast<std::size_t>(std::min<std::uint64_t>(n, remaining_));
        ssize_t got = 0;
        if (extents_) {
            while (extent_ < extents_->size() && extent_pos_ == (*extents_)[extent_].length) {
                extent_++;
                extent_pos_ = 0;
            }
            const Extent& x = (*extents_)[extent_];
            n = static_cast<std::size_t>(std::min<std::uint64_t>(n, x.length - extent_pos_));
            do
                got = ::pread(file_.get(), buf, n, static_cast<off_t>(x.offset + extent_pos_));
            while (got < 0 && errno == EINTR);
            if (got > 0)
                extent_pos_ += static_cast<std::uint64_t>(got);
        } else {
            do
                got = ::read(file_.get(), buf, n);
            while (got < 0 && errno == EINTR);
        }
        if (got < 0)
            throw_errno("can't read ", shown(cur_path_));
        if (got == 0)
            fail("can't read ", shown(cur_path_), ": file shrank while reading");
        remaining_ -= static_cast<std::uint64_t>(got);
        return static_cast<std::size_t>(got);
    }

    void rewind() override {
        stack_.clear();
        links_.clear();
        file_.reset();
        started_ = false;
    }

    std::string describe() const override { return desc_; }

private:
    struct Frame {
        Fd fd;
        std::string path;
        std::vector<std::string> names;
        std::size_t next = 0;
    };

    std::string shown(const std::string& path) const {
        return path.empty() ? root_.string() : cat(root_.string(), "/", printable(path));
    }

    void push(Fd fd, std::string path) {
        std::vector<std::string> names = list_dir(fd.get(), shown(path));
        stack_.push_back({std::move(fd), std::move(path), std::move(names), 0});
    }

    static void fill(Entry& e, const struct stat& st, std::string path) {
        e.path = std::move(path);
        e.mode = st.st_mode & 07777;
        e.uid = st.st_uid;
        e.gid = st.st_gid;
        e.mtime = st.st_mtim.tv_sec;
    }

    void visit(int dirfd, const std::string& name, const std::string& path, Entry& e) {
        struct stat st {};

        if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
            throw_errno("can't stat ", shown(path));
        e = Entry{};
        fill(e, st, path);
        switch (st.st_mode & S_IFMT) {
        case S_IFDIR: {
            e.type = EntryType::dir;
            Fd fd = open_at(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (xattrs_)
                e.xattrs = read_user_xattrs(fd.get(), shown(path), path, root_);
            push(std::move(fd), path);
            return;
        }
        case S_IFREG:
            visit_file(dirfd, name, path, st, e);
            return;
        case S_IFLNK: {
            e.type = EntryType::symlink;
            std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
            const ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
            if (n < 0)
                throw_errno("can't read symlink ", shown(path));
            target.resize(static_cast<std::size_t>(n));
            e.link_target = std::move(target);
            return;
        }
        case S_IFCHR:
            e.type = EntryType::chardev;
            break;
        case S_IFBLK:
            e.type = EntryType::blockdev;
            break;
        case S_IFIFO:
            e.type = EntryType::fifo;
            break;
        default:
            e.type = EntryType::socket;
            break;
        }
        e.dev_major = major(st.st_rdev);
        e.dev_minor = minor(st.st_rdev);
    }

    void visit_file(int dirfd, const std::string& name, const std::string& path,
                    const struct stat& st, Entry& e) {
        if (st.st_nlink > 1) {
            const auto [it, first] = links_.emplace(std::make_pair(st.st_dev, st.st_ino), path);
            if (!first) {
                e.type = EntryType::hardlink;
                e.link_target = it->second;
                return;
            }
        }
        e.type = EntryType::file;
        e.size = static_cast<std::uint64_t>(st.st_size);
        file_ = open_at(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        cur_path_ = path;
        // A file with holes has fewer 512-byte blocks than bytes; only then is
        // asking for its data regions worth two more system calls.
        if (e.size > 0 && static_cast<std::uint64_t>(st.st_blocks) * 512 < e.size)
            e.sparse = find_extents(file_.get(), e.size, shown(path));
        extents_ = e.sparse;
        extent_ = 0;
        extent_pos_ = 0;
        remaining_ = e.data_size();
        if (xattrs_)
            e.xattrs = read_user_xattrs(file_.get(), shown(path), path, root_);
    }

    fs::path root_;
    std::string desc_;
    bool xattrs_;
    bool started_ = false;
    std::vector<Frame> stack_;
    std::map<std::pair<dev_t, ino_t>, std::string> links_;
    // The current regular file.
    Fd file_;
    std::string cur_path_;
    std::optional<std::vector<Extent>> extents_;
    std::size_t extent_ = 0;
    std::uint64_t extent_pos_ = 0;
    std::uint64_t remaining_ = 0;
};

} // namespace

std::unique_ptr<Source> make_dir_source(const fs::path& dir, bool xattrs,
                                        std::string described_as) {
    struct stat st {};

    if (::stat(dir.c_str(), &st) != 0)
        throw_errno("can't read ", dir.string());
    if (!S_ISDIR(st.st_mode))
        fail("can't read ", dir.string(), ": not a directory");
    return std::make_unique<DirSource>(dir, xattrs, std::move(described_as));
}

std::unique_ptr<Source> make_storage_source(const fs::path& storage, std::string_view ref) {
    const fs::path dir = storage::image_dir(storage, ref);

    struct stat st {};

    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        fail("can't find image ", printable(ref), " in storage ", storage.string());
    return std::make_unique<DirSource>(dir, true, cat("storage image ", printable(ref)));
}

} // namespace ch::image

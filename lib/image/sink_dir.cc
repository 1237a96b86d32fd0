// sink_dir.cc: a directory tree as a Sink (also images in storage). Written
// into a staging directory beside the destination and published with one
// rename. Defence in depth behind the unpacking rules: every path is walked
// from the staging root with openat(O_NOFOLLOW), so a symlink or a missing
// directory on the way is an error, never something followed or invented.
// Files are created by the invoking user (no chown).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image/formats.hh"
#include "storage/layout.hh"
#include "storage/publish.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"
#include "util/tree.hh"

namespace ch::image {

namespace {

constexpr std::size_t copy_block = 1024 * 1024;

void pwrite_all(int fd, const char* p, std::size_t n, off_t off, const std::string& shown) {
    while (n > 0) {
        const ssize_t w = ::pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            throw_errno("can't write ", shown);
        }
        p += w;
        n -= static_cast<std::size_t>(w);
        off += w;
    }
}

struct timespec to_timespec(std::int64_t t) {
    struct timespec ts {};

    ts.tv_sec = static_cast<time_t>(t);
    return ts;
}

class DirSink final : public Sink {
public:
    ~DirSink() override {
        for (auto& [name, child] : dirs_.children)
            destroy(std::move(child));
    }

    explicit DirSink(const fs::path& dest)
        : staged_(dest, storage::StagedKind::dir)
        , root_(open_at(AT_FDCWD, staged_.path(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW))
        , buf_(copy_block) {}

    void add(const Entry& e, Source& src) override {
        if (e.path.empty()) { // the root: publish() sets its mode; keep its time
            if (e.type == EntryType::dir) {
                root_mtime_ = e.mtime;
                set_xattrs(root_.get(), e);
            }
            return;
        }
        const std::size_t slash = e.path.rfind('/');
        const std::string parent_path = slash == std::string::npos ? "" : e.path.substr(0, slash);
        const std::string name = slash == std::string::npos ? e.path : e.path.substr(slash + 1);
        if (e.type == EntryType::whiteout) {
            const int pfd = parent(parent_path, false);
            if (pfd >= 0)
                remove_existing(pfd, name, e.path);
            return;
        }
        if (e.type == EntryType::hardlink) {
            add_hardlink(e, parent_path, name);
            return;
        }
        const int pfd = parent(parent_path, true);
        switch (e.type) {
        case EntryType::dir:
            add_dir(pfd, name, e);
            break;
        case EntryType::file:
            remove_existing(pfd, name, e.path);
            add_file(pfd, name, e, src);
            break;
        case EntryType::symlink: {
            remove_existing(pfd, name, e.path);
            if (::symlinkat(e.link_target.c_str(), pfd, name.c_str()) != 0)
                throw_errno("can't create symlink ", printable(e.path));
            const struct timespec ts[2] = {to_timespec(e.mtime), to_timespec(e.mtime)};
            if (::utimensat(pfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0)
                throw_errno("can't set the time of ", printable(e.path));
            break;
        }
        default: // the unpacking rules never let these through
            fail("can't create ", printable(e.path), ": a ", type_name(e.type),
                 " is not allowed in an image");
        }
    }

    void commit() override {
        cache_names_.clear();
        cache_fds_.clear();

        // Directory modes and times last: creating children would change the
        // times, and a read-only mode would stop them being created. Deepest
        // first: a walk of the tree of directories, each set once all below
        // it are, with one descriptor per level.
        struct Frame {
            DirNode* node;
            Fd fd;
            DirNode::Children::iterator next;
        };

        std::vector<Frame> stack;
        stack.push_back({&dirs_, Fd(), dirs_.children.begin()});
        std::string path; // of the top frame, for messages
        while (!stack.empty()) {
            Frame& f = stack.back();
            const int at = f.fd ? f.fd.get() : root_.get();
            if (f.next != f.node->children.end()) {
                const auto& [name, child] = *f.next++;
                Fd fd = open_at(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
                path += (path.empty() ? "" : "/") + name;
                stack.push_back({child.get(), std::move(fd), child->children.begin()});
                continue;
            }
            if (f.fd && f.node->known) {
                if (::fchmod(f.fd.get(), f.node->mode) != 0)
                    throw_errno("can't set the mode of ", printable(path));
                const struct timespec ts[2] = {to_timespec(f.node->mtime),
                                               to_timespec(f.node->mtime)};
                if (::futimens(f.fd.get(), ts) != 0)
                    throw_errno("can't set the time of ", printable(path));
            }
            stack.pop_back();
            const std::size_t slash = path.rfind('/');
            path.resize(slash == std::string::npos ? 0 : slash);
        }
        if (root_mtime_) {
            const struct timespec ts[2] = {to_timespec(*root_mtime_), to_timespec(*root_mtime_)};
            if (::futimens(root_.get(), ts) != 0)
                throw_errno("can't set the time of the image root");
        }
        root_.reset();
        staged_.publish();
    }

private:
    // The directories written, as a tree of names (not of whole paths, which
    // would cost depth x length per directory), with what commit() sets.
    struct DirNode {
        using Children = std::map<std::string, std::unique_ptr<DirNode>>;
        bool known = false; // added as an entry (not only a parent of one)
        mode_t mode = 0755;
        std::int64_t mtime = 0;
        Children children;
    };

    // Free a subtree without recursion.
    static void destroy(std::unique_ptr<DirNode> n) {
        std::vector<std::unique_ptr<DirNode>> work;
        work.push_back(std::move(n));
        while (!work.empty()) {
            std::unique_ptr<DirNode> cur = std::move(work.back());
            work.pop_back();
            if (!cur)
                continue;
            for (auto& [name, child] : cur->children)
                work.push_back(std::move(child));
            cur->children.clear();
        }
    }

    // Descriptor of the directory at path (relative to the staging root),
    // walked one component at a time without following symlinks. Reuses the
    // descriptors of the previous walk for the common prefix: entries come
    // roughly sorted, so most walks cost nothing. The result is borrowed and
    // valid until the next call. Returns -1 if !must and a component is
    // missing or not a directory.
    int parent(const std::string& path, bool must) {
        const std::vector<std::string> comps =
            path.empty() ? std::vector<std::string>{} : split(path, '/');
        std::size_t keep = 0;
        while (keep < comps.size() && keep < cache_names_.size() &&
               comps[keep] == cache_names_[keep])
            keep++;
        cache_names_.resize(keep);
        cache_fds_.resize(keep);
        for (std::size_t i = keep; i < comps.size(); i++) {
            const int at = i == 0 ? root_.get() : cache_fds_.back().get();
            Fd fd = try_open_at(at, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (!fd) {
                const int err = errno;
                if (!must)
                    return -1;
                const std::string shown = quote_name(
                    join({comps.begin(), comps.begin() + static_cast<std::ptrdiff_t>(i) + 1}, "/"));
                const std::string what =
                    cat("can't create ", quote_name(path + "/..."), ": parent ", shown);

                struct stat st {};

                if ((err == ELOOP || err == ENOTDIR) &&
                    ::fstatat(at, comps[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISLNK(st.st_mode))
                    fail(what, " is a symlink (not followed)");
                if (err == ENOTDIR)
                    fail(what, " is not a directory");
                if (err == ENOENT)
                    fail(what, " is missing");
                errno = err;
                throw_errno("can't open ", shown);
            }
            cache_names_.push_back(comps[i]);
            cache_fds_.push_back(std::move(fd));
        }
        return comps.empty() ? root_.get() : cache_fds_.back().get();
    }

    // Make way for a new entry at parent/name: remove what is there (a whole
    // tree for a directory).
    void remove_existing(int pfd, const std::string& name, const std::string& path) {
        struct stat st {};

        if (::fstatat(pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                return;
            throw_errno("can't stat ", printable(path));
        }
        if (!S_ISDIR(st.st_mode)) {
            if (::unlinkat(pfd, name.c_str(), 0) != 0)
                throw_errno("can't remove ", printable(path));
            return;
        }
        remove_tree_at(pfd, name);
        // Cached descriptors may point into the removed tree; pfd stays
        // valid because it is a parent of what was removed.
        forget_below(path);
    }

    void forget_below(const std::string& path) {
        DirNode* n = &dirs_;
        const std::vector<std::string> comps = split(path, '/');
        for (std::size_t i = 0; i + 1 < comps.size() && n != nullptr; i++) {
            const auto it = n->children.find(comps[i]);
            n = it == n->children.end() ? nullptr : it->second.get();
        }
        if (n != nullptr) {
            if (const auto it = n->children.find(comps.back()); it != n->children.end()) {
                destroy(std::move(it->second));
                n->children.erase(it);
            }
        }
        // Keep only descriptors shallower than path: its parent's stays valid.
        const auto keep = static_cast<std::size_t>(std::count(path.begin(), path.end(), '/'));
        if (cache_names_.size() > keep) {
            cache_names_.resize(keep);
            cache_fds_.resize(keep);
        }
    }

    void add_dir(int pfd, const std::string& name, const Entry& e) {
        struct stat st {};

        const bool exists = ::fstatat(pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (!exists || !S_ISDIR(st.st_mode)) { // directory over directory merges
            if (exists)
                remove_existing(pfd, name, e.path);
            // Owner-only until commit() sets the real mode.
            if (::mkdirat(pfd, name.c_str(), 0700) != 0)
                throw_errno("can't create directory ", printable(e.path));
        }
        DirNode* n = &dirs_;
        for (const auto& c : split(e.path, '/')) {
            auto& slot = n->children[c];
            if (!slot)
                slot = std::make_unique<DirNode>();
            n = slot.get();
        }
        n->known = true;
        n->mode = e.mode;
        n->mtime = e.mtime;
        if (!e.xattrs.empty()) {
            const Fd fd = open_at(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            set_xattrs(fd.get(), e);
        }
    }

    void add_file(int pfd, const std::string& name, const Entry& e, Source& src) {
        const std::string shown = printable(e.path);
        const Fd fd(::openat(pfd, name.c_str(),
                             O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd)
            throw_errno("can't create ", shown);
        if (e.sparse) {
            // Holes stay holes: set the size, then write only the data regions.
            if (::ftruncate(fd.get(), static_cast<off_t>(e.size)) != 0)
                throw_errno("can't set the size of ", shown);
            for (const auto& x : *e.sparse)
                copy(src, fd.get(), x.length, static_cast<off_t>(x.offset), e);
        } else {
            copy(src, fd.get(), e.size, 0, e);
        }
        if (::fchmod(fd.get(), e.mode) != 0)
            throw_errno("can't set the mode of ", shown);
        set_xattrs(fd.get(), e);
        const struct timespec ts[2] = {to_timespec(e.mtime), to_timespec(e.mtime)};
        if (::futimens(fd.get(), ts) != 0)
            throw_errno("can't set the time of ", shown);
    }

    void copy(Source& src, int fd, std::uint64_t len, off_t off, const Entry& e) {
        while (len > 0) {
            const std::size_t want =
                static_cast<std::size_t>(std::min<std::uint64_t>(len, buf_.size()));
            const std::size_t n = src.read(buf_.data(), want);
            if (n == 0)
                fail("can't write ", printable(e.path), ": the source ended ", len, " bytes early");
            pwrite_all(fd, buf_.data(), n, off, printable(e.path));
            off += static_cast<off_t>(n);
            len -= n;
        }
    }

    void add_hardlink(const Entry& e, const std::string& parent_path, const std::string& name) {
        const std::size_t slash = e.link_target.rfind('/');
        const std::string tname =
            slash == std::string::npos ? e.link_target : e.link_target.substr(slash + 1);
        // Hold the target's directory in our own descriptor: the walk for
        // the link's directory below reuses the cache.
        const int borrowed =
            parent(slash == std::string::npos ? "" : e.link_target.substr(0, slash), true);
        const Fd tdir(::fcntl(borrowed, F_DUPFD_CLOEXEC, 0));
        if (!tdir)
            throw_errno("can't duplicate a descriptor");
        const int pfd = parent(parent_path, true);
        remove_existing(pfd, name, e.path);
        // Without AT_SYMLINK_FOLLOW, linkat links a symlink itself.
        if (::linkat(tdir.get(), tname.c_str(), pfd, name.c_str(), 0) != 0)
            throw_errno("can't link ", printable(e.path), " to ", printable(e.link_target));
    }

    void set_xattrs(int fd, const Entry& e) {
        for (const auto& x : e.xattrs) {
            if (::fsetxattr(fd, x.name.c_str(), x.value.data(), x.value.size(), 0) == 0)
                continue;
            if (!xattr_warned_) {
                xattr_warned_ = true;
                log::warning("can't set extended attributes (first: ", printable(x.name), " on ",
                             printable(e.path), ": ", std::strerror(errno),
                             "); continuing without them");
            }
        }
    }

    storage::Staged staged_;
    Fd root_;
    std::vector<char> buf_;
    std::vector<std::string> cache_names_;
    std::vector<Fd> cache_fds_;
    DirNode dirs_; // the root's node: its mode is publish()'s
    std::optional<std::int64_t> root_mtime_;
    bool xattr_warned_ = false;
};

} // namespace

std::unique_ptr<Sink> make_dir_sink(const fs::path& dest) {
    return std::make_unique<DirSink>(dest);
}

std::unique_ptr<Sink> make_storage_sink(const fs::path& storage, std::string_view ref) {
    const std::string name = storage::image_dirname(ref);
    return std::make_unique<DirSink>(storage::prepare_images_dir(storage) / name);
}

} // namespace ch::image

// source_squash.cc: a SquashFS file as a source of the entry stream, read
// with the checked decoder of squash_image.hh (the same one the FUSE server
// uses). The walk is depth-first with an explicit stack (a hostile image can
// nest deeper than the C stack): each directory's listing is read whole and
// sorted, so entries come parents first, siblings by name. Only the listings
// on the current path and the hard-link map are kept in memory; file data is
// inflated block by block as read() asks.
//
// The image is untrusted: besides squash_image's checks, a directory that
// contains itself is refused, and so are paths longer than max_path, trees
// deeper than max_depth, and more than max_shared_entries entries expanded
// through directories that appear in more than one place (a directory
// referenced from each level of a chain doubles the tree at every level:
// 2^depth entries from a few KiB of image). Every failure names the file and
// says what is wrong (exit 84).
#include <algorithm>
#include <cstring>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <sys/stat.h>

#include <sqfs/inode.h>

#include "image/squash.hh"
#include "image/squash_image.hh"
#include "util/error.hh"
#include "util/strings.hh"

namespace ch::image {

namespace {

using squash::Inode;

constexpr std::size_t max_path = 4096;                // bytes of an entry's path
constexpr std::size_t max_depth = 1024;               // directories on a path
constexpr std::uint64_t max_shared_entries = 1 << 16; // entries under directories seen before
// Inflated data blocks kept between reads: several files' tails share one
// fragment block, which then is inflated once.
constexpr std::size_t cache_bytes = std::size_t{8} << 20;

class SquashSource : public Source {
public:
    explicit SquashSource(const fs::path& file);
    bool next(Entry& e) override;
    std::size_t read(void* buf, std::size_t n) override;
    void rewind() override;

    std::string describe() const override { return name_; }

private:
    struct Child {
        std::string name;
        std::uint64_t ref;
    };

    struct Frame {
        std::string path;
        std::uint64_t ref;
        bool shared; // this directory (or one above it) was seen before
        std::vector<Child> kids;
        std::size_t next = 0;
    };

    [[noreturn]] void fail(std::string_view why) const;
    [[noreturn]] void fail_at(std::string_view path, std::string_view why) const;
    Inode read_inode(std::uint64_t ref, std::string_view path);
    void fill(Entry& e, std::string path, Inode ino, bool shared);
    std::vector<Child> read_listing(const Inode& dir, std::string_view path);
    void map_file(Entry& e, const Inode& ino);

    std::string name_;
    std::shared_ptr<squash::Image> img_;
    std::unique_ptr<squash::Inflater> inf_;
    squash::BlockCache cache_{cache_bytes};

    // Walk state.
    bool started_ = false;
    std::vector<Frame> stack_;
    std::unordered_set<std::uint64_t> open_dirs_; // refs of the dirs on stack_
    std::unordered_set<std::uint64_t> seen_dirs_; // refs of every dir listed so far
    std::uint64_t shared_entries_ = 0;
    std::unordered_map<std::uint64_t, std::string> links_; // inode ref -> first path (nlink > 1)

    // The regular file whose data read() delivers.
    bool has_file_ = false;
    Inode cur_;
    squash::FileLayout layout_;
    std::string cur_path_;
    std::vector<Extent> extents_;
    std::size_t ext_ = 0;
    std::uint64_t ext_pos_ = 0;
};

SquashSource::SquashSource(const fs::path& file)
    : name_(file.string()) {
    try {
        img_ = squash::Image::open(file);
        inf_ = std::make_unique<squash::Inflater>(*img_);
    } catch (const squash::SquashError& e) {
        fail(e.what());
    } catch (Error& e) {
        e.set_exit_code(Exit::squash);
        throw;
    }
}

void SquashSource::fail(std::string_view why) const {
    throw Error(cat("can't read ", name_, ": ", why), Exit::squash);
}

void SquashSource::fail_at(std::string_view path, std::string_view why) const {
    if (path.empty())
        fail(cat("root directory: ", why));
    fail(cat("entry '", printable(path), "': ", why));
}

Inode SquashSource::read_inode(std::uint64_t ref, std::string_view path) {
    try {
        return img_->inode(ref, *inf_);
    } catch (const squash::SquashError& e) {
        fail_at(path, e.what());
    }
}

std::vector<SquashSource::Child> SquashSource::read_listing(const Inode& dir,
                                                            std::string_view path) {
    std::vector<Child> kids;
    try {
        img_->list(dir, 0, *inf_, [&](const squash::DirEntry& e) {
            kids.push_back(Child{e.name, e.ref});
            return true;
        });
    } catch (const squash::SquashError& e) {
        fail_at(path, e.what());
    }
    // Writers must store listings sorted (the kernel's lookup depends on it),
    // but the stream's order is our promise, not the image's: sort anyway.
    std::sort(kids.begin(), kids.end(),
              [](const Child& a, const Child& b) { return a.name < b.name; });
    for (std::size_t i = 1; i < kids.size(); ++i)
        if (kids[i].name == kids[i - 1].name)
            fail_at(path, cat("corrupted directory listing (name '", printable(kids[i].name),
                              "' twice)"));
    return kids;
}

bool SquashSource::next(Entry& e) {
    e = Entry{};
    has_file_ = false;
    extents_.clear();
    if (!started_) {
        started_ = true;
        fill(e, "", read_inode(img_->root_ref(), ""), false);
        return true;
    }
    while (!stack_.empty()) {
        Frame& f = stack_.back();
        if (f.next == f.kids.size()) {
            open_dirs_.erase(f.ref);
            stack_.pop_back();
            continue;
        }
        Child c = std::move(f.kids[f.next++]);
        const bool shared = f.shared;
        std::string path = f.path.empty() ? std::move(c.name) : cat(f.path, "/", c.name);
        if (path.size() > max_path)
            fail_at(path, cat("path longer than ", max_path, " bytes"));
        if (shared && ++shared_entries_ > max_shared_entries)
            fail_at(path, cat("more than ", max_shared_entries,
                              " entries under directories that appear in several places"));
        Inode ino = read_inode(c.ref, path);
        fill(e, std::move(path), std::move(ino), shared); // may push onto stack_ (f dangles)
        return true;
    }
    return false;
}

void SquashSource::fill(Entry& e, std::string path, Inode ino, bool shared) {
    e.path = std::move(path);
    e.mode = ino.mode & 07777;
    e.uid = ino.uid;
    e.gid = ino.gid;
    e.mtime = ino.mtime;
    switch (ino.mode & S_IFMT) {
    case S_IFDIR:
        e.type = EntryType::dir;
        break;
    case S_IFREG:
        e.type = EntryType::file;
        break;
    case S_IFLNK:
        e.type = EntryType::symlink;
        break;
    case S_IFBLK:
    case S_IFCHR: {
        e.type = S_ISBLK(ino.mode) ? EntryType::blockdev : EntryType::chardev;
        // Linux's encoding (new_encode_dev): minor's low byte, major, the
        // rest of minor.
        const std::uint32_t d = ino.devno;
        e.dev_major = (d >> 8) & 0xFFF;
        e.dev_minor = (d & 0xFF) | ((d >> 12) & 0xFFF00);
        break;
    }
    case S_IFIFO:
        e.type = EntryType::fifo;
        break;
    default:
        e.type = EntryType::socket;
        break;
    }
    // Basic file inodes carry no link count: one name.
    const std::uint32_t nlink = ino.type == SQFS_INODE_FILE ? 1 : ino.nlink;

    // A second directory entry for an inode already seen is a hard link.
    // Only inodes that say they have several names are remembered, so the
    // map holds the hard-linked files, not every file of the image.
    if (e.type != EntryType::dir && nlink > 1) {
        const auto [it, first] = links_.emplace(ino.ref, e.path);
        if (!first) {
            e.type = EntryType::hardlink;
            e.link_target = it->second;
            return;
        }
    }
    try {
        for (auto& x : img_->xattrs(ino, *inf_))
            e.xattrs.push_back(Xattr{std::move(x.name), std::move(x.value)});
    } catch (const squash::SquashError& err) {
        fail_at(e.path, err.what());
    }

    switch (e.type) {
    case EntryType::dir: {
        if (!open_dirs_.insert(ino.ref).second)
            fail_at(e.path, "corrupted: the directory contains itself");
        if (stack_.size() >= max_depth)
            fail_at(e.path, cat("more than ", max_depth, " directories deep"));
        // A directory listed before, elsewhere: its entries (and everything
        // under it) count against max_shared_entries.
        const bool again = !seen_dirs_.insert(ino.ref).second;
        std::vector<Child> kids = read_listing(ino, e.path);
        stack_.push_back(Frame{e.path, ino.ref, shared || again, std::move(kids), 0});
        break;
    }
    case EntryType::symlink:
        e.link_target = std::move(ino.target);
        break;
    case EntryType::file:
        map_file(e, ino);
        cur_ = std::move(ino);
        cur_path_ = e.path;
        has_file_ = true;
        break;
    default:
        break;
    }
}

// The file's size, and its data regions if it has sparse blocks.
void SquashSource::map_file(Entry& e, const Inode& ino) {
    try {
        layout_ = img_->layout(ino, *inf_);
    } catch (const squash::SquashError& err) {
        fail_at(e.path, err.what());
    }
    const std::uint64_t bs = img_->block_size();
    const std::uint64_t size = ino.size;
    e.size = size;
    bool holes = false;
    auto add = [&](std::uint64_t off, std::uint64_t len) {
        if (len == 0)
            return;
        if (!extents_.empty() && extents_.back().offset + extents_.back().length == off)
            extents_.back().length += len;
        else
            extents_.push_back(Extent{off, len});
    };
    const std::size_t count = layout_.count();
    for (std::size_t i = 0; i < count; ++i) {
        const std::uint64_t off = std::uint64_t(i) * bs;
        const std::uint64_t len = std::min(bs, size - off);
        if ((layout_.hdrs[i] & 0xFFFFFF) == 0)
            holes = true;
        else
            add(off, len);
    }
    if (layout_.has_tail)
        add(std::uint64_t(count) * bs, size - std::uint64_t(count) * bs);
    if (holes)
        e.sparse = extents_;
    ext_ = 0;
    ext_pos_ = 0;
}

std::size_t SquashSource::read(void* buf, std::size_t n) {
    if (!has_file_ || n == 0)
        return 0;
    while (ext_ < extents_.size() && ext_pos_ == extents_[ext_].length) {
        ++ext_;
        ext_pos_ = 0;
    }
    if (ext_ == extents_.size())
        return 0;
    const Extent& x = extents_[ext_];
    const std::uint64_t bs = img_->block_size();
    const std::uint64_t at = x.offset + ext_pos_;
    const std::uint64_t i = at / bs;
    const std::uint64_t within = at % bs;
    squash::BlockKey key;
    std::size_t base = 0;
    if (i < layout_.count()) {
        key = layout_.block(i);
    } else {
        key = layout_.tail;
        base = layout_.tail_offset;
    }
    const std::size_t len =
        static_cast<std::size_t>(std::min<std::uint64_t>({n, x.length - ext_pos_, bs - within}));
    std::shared_ptr<const squash::Block> b;
    try {
        b = cache_.get(key, bs, [&](const squash::BlockKey& k, squash::Block& out) {
            out.size = img_->read_block(k, out.data.get(), out.cap, *inf_);
        });
    } catch (const squash::SquashError& err) {
        fail_at(cur_path_, err.what());
    }
    if (base + within > b->size || len > b->size - base - within)
        fail_at(cur_path_, "corrupted: data ends before the file size");
    std::memcpy(buf, b->data.get() + base + within, len);
    ext_pos_ += len;
    return len;
}

void SquashSource::rewind() {
    started_ = false;
    stack_.clear();
    open_dirs_.clear();
    seen_dirs_.clear();
    shared_entries_ = 0;
    links_.clear();
    has_file_ = false;
    extents_.clear();
}

} // namespace

std::unique_ptr<Source> make_squash_source(const fs::path& file) {
    return std::make_unique<SquashSource>(file);
}

} // namespace ch::image

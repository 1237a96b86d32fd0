// source_tar.cc: a tar archive as a Source, read with libarchive. Format and
// compression are detected from the bytes, never from the name: registries
// serve zstd layers as "tar+gzip" often enough, and users rename files.
// Every libarchive failure becomes one Error naming the file and, where
// known, the entry.
#include <algorithm>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "image/formats.hh"
#include "image/unpack_rules.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

namespace ch::image {

namespace {

using ArchiveReader = std::unique_ptr<archive, FreeWith<archive_read_free>>;

constexpr std::size_t read_block = 256 * 1024;

class TarSource final : public Source {
public:
    explicit TarSource(fs::path path)
        : path_(std::move(path))
        , fd_(open_at(AT_FDCWD, path_, O_RDONLY)) {
        open();
    }

    bool next(Entry& e) override {
        archive_entry* ae = nullptr;
        int r = ARCHIVE_RETRY;
        while (r == ARCHIVE_RETRY)
            r = archive_read_next_header(a_.get(), &ae);
        if (r == ARCHIVE_EOF) {
            in_entry_ = false;
            return false;
        }
        if (r == ARCHIVE_WARN)
            log::warning(path_.string(), ": ", after(), archive_error_string(a_.get()));
        else if (r != ARCHIVE_OK)
            fail_here(after());
        in_entry_ = true;
        convert(ae, e);
        last_ = e.path;
        remaining_ = e.data_size();
        sparse_ = e.sparse.has_value();
        block_left_ = 0;
        return true;
    }

    std::size_t read(void* buf, std::size_t n) override {
        if (!in_entry_ || remaining_ == 0 || n == 0)
            return 0;
        n = static_cast<std::size_t>(std::min<std::uint64_t>(n, remaining_));
        std::size_t got = 0;
        if (sparse_) {
            // Data blocks arrive at their offsets with the holes left out,
            // which is exactly the stream Entry::sparse describes.
            while (block_left_ == 0) {
                const void* p = nullptr;
                la_int64_t off = 0;
                const int r = archive_read_data_block(a_.get(), &p, &block_left_, &off);
                if (r == ARCHIVE_EOF)
                    fail("can't read ", path_.string(), ": entry ", quote_name(last_),
                         ": data ends before its sparse map says");
                if (r < ARCHIVE_WARN)
                    fail_here(cat("entry ", quote_name(last_), ": "));
                block_ = static_cast<const char*>(p);
            }
            got = std::min(n, block_left_);
            std::copy(block_, block_ + got, static_cast<char*>(buf));
            block_ += got;
            block_left_ -= got;
        } else {
            const la_ssize_t r = archive_read_data(a_.get(), buf, n);
            if (r < 0)
                fail_here(cat("entry ", quote_name(last_), ": "));
            if (r == 0)
                fail("can't read ", path_.string(), ": entry ", quote_name(last_),
                     ": data ends early");
            got = static_cast<std::size_t>(r);
        }
        remaining_ -= got;
        return got;
    }

    void rewind() override {
        a_.reset();
        if (::lseek(fd_.get(), 0, SEEK_SET) != 0)
            throw_errno("can't rewind ", path_.string());
        open();
    }

    std::string describe() const override { return path_.string(); }

private:
    void open() {
        a_.reset(archive_read_new());
        if (!a_)
            fail("can't read ", path_.string(), ": out of memory");
        archive_read_support_filter_all(a_.get());
        archive_read_support_format_tar(a_.get()); // ustar, pax, GNU and old v7
        last_.clear();
        in_entry_ = false;
        if (archive_read_open_fd(a_.get(), fd_.get(), read_block) != ARCHIVE_OK)
            fail_here("");
    }

    std::string after() const {
        return last_.empty() ? std::string() : cat("after entry ", quote_name(last_), ": ");
    }

    [[noreturn]] void fail_here(const std::string& where) const {
        const char* msg = archive_error_string(a_.get());
        std::string why = msg != nullptr ? msg : "unknown libarchive error";
        if (why == "Unrecognized archive format")
            why = "not a tar archive (plain or compressed with gzip, zstd, xz or bzip2)";
        fail("can't read ", path_.string(), ": ", where, why);
    }

    void convert(archive_entry* ae, Entry& e) const {
        e = Entry{};
        const char* name = archive_entry_pathname(ae);
        if (name == nullptr)
            fail("can't read ", path_.string(), ": ", after(), "entry without a name");
        e.path = name;
        const char* hard = archive_entry_hardlink(ae);
        switch (archive_entry_filetype(ae)) {
        case AE_IFREG:
            e.type = EntryType::file;
            break;
        case AE_IFDIR:
            e.type = EntryType::dir;
            break;
        case AE_IFLNK:
            e.type = EntryType::symlink;
            if (const char* t = archive_entry_symlink(ae))
                e.link_target = t;
            break;
        case AE_IFCHR:
            e.type = EntryType::chardev;
            break;
        case AE_IFBLK:
            e.type = EntryType::blockdev;
            break;
        case AE_IFIFO:
            e.type = EntryType::fifo;
            break;
        case AE_IFSOCK:
            e.type = EntryType::socket;
            break;
        default:
            if (hard == nullptr)
                fail("can't read ", path_.string(), ": entry ", quote_name(e.path),
                     ": unknown type");
        }
        if (hard != nullptr) {
            e.type = EntryType::hardlink;
            e.link_target = hard;
        }
        e.mode = archive_entry_perm(ae) & 07777;
        e.uid = static_cast<uid_t>(archive_entry_uid(ae));
        e.gid = static_cast<gid_t>(archive_entry_gid(ae));
        e.mtime = archive_entry_mtime(ae);
        e.dev_major = static_cast<unsigned>(archive_entry_rdevmajor(ae));
        e.dev_minor = static_cast<unsigned>(archive_entry_rdevminor(ae));
        if (e.type == EntryType::file) {
            const la_int64_t size = archive_entry_size(ae);
            e.size = size > 0 ? static_cast<std::uint64_t>(size) : 0;
            if (archive_entry_sparse_reset(ae) > 0) {
                std::vector<Extent> xs;
                la_int64_t off = 0, len = 0;
                while (archive_entry_sparse_next(ae, &off, &len) == ARCHIVE_OK) {
                    if (off >= 0 && len > 0)
                        xs.push_back(
                            {static_cast<std::uint64_t>(off), static_cast<std::uint64_t>(len)});
                    if (xs.size() > max_extents)
                        fail("can't read ", path_.string(), ": entry ", quote_name(e.path),
                             ": sparse map of more than ", max_extents, " regions");
                }
                // One region covering the whole file is just a file.
                if (!(xs.size() == 1 && xs[0].offset == 0 && xs[0].length == e.size))
                    e.sparse = std::move(xs);
            }
        }
        if (archive_entry_xattr_reset(ae) > 0) {
            const char* xname = nullptr;
            const void* value = nullptr;
            std::size_t size = 0;
            std::size_t count = 0, bytes = 0;
            while (archive_entry_xattr_next(ae, &xname, &value, &size) == ARCHIVE_OK) {
                if (xname == nullptr)
                    continue;
                // Counted as stored, duplicates too, and checked before
                // anything is copied.
                bytes += std::strlen(xname) + size;
                try {
                    check_xattr_limits(e.path, ++count, bytes);
                } catch (Error& err) {
                    err.add_context(cat("can't read ", path_.string()));
                    throw;
                }
                // libarchive's own writer stores each attribute twice (as
                // SCHILY.xattr and LIBARCHIVE.xattr); the last one wins.
                std::string v(static_cast<const char*>(value), size);
                const auto same = std::find_if(e.xattrs.begin(), e.xattrs.end(),
                                               [&](const Xattr& x) { return x.name == xname; });
                if (same != e.xattrs.end())
                    same->value = std::move(v);
                else
                    e.xattrs.push_back({xname, std::move(v)});
            }
        }
    }

    fs::path path_;
    Fd fd_;
    ArchiveReader a_;
    std::string last_; // name of the current (or last) entry, for messages
    bool in_entry_ = false;
    std::uint64_t remaining_ = 0;
    bool sparse_ = false;
    const char* block_ = nullptr;
    std::size_t block_left_ = 0;
};

} // namespace

std::unique_ptr<Source> make_tar_source(const fs::path& file) {
    return std::make_unique<TarSource>(file);
}

} // namespace ch::image

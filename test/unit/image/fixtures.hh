// fixtures.hh: helpers shared by the image tests: a temporary directory that
// cleans up after itself, tarballs written with libarchive (so hostile names
// and types are easy to make), and a Source over a list of entries.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "image/entry.hh"
#include "util/error.hh"
#include "util/tree.hh"

// The tests build Entry and TarSpec values with designated initializers,
// naming only the fields that matter; GCC would flag every field left out.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace ch::test {

namespace fs = std::filesystem;

class TempDir {
public:
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ch-unit.XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr)
            throw_errno("can't create a temporary directory");
        path_ = tmpl;
    }

    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    ~TempDir() {
        try {
            remove_tree(path_);
        } catch (...) {
        }
    }

    const fs::path& path() const { return path_; }

    fs::path operator/(const std::string& name) const { return path_ / name; }

private:
    fs::path path_;
};

// One entry of a test tarball. data is the content of a regular file (its
// whole logical content, zeros in holes, when sparse is set).
struct TarSpec {
    std::string name;
    image::EntryType type = image::EntryType::file;
    std::string data;
    mode_t mode = 0644;
    std::string link; // symlink or hard link target
    std::vector<image::Extent> sparse;
    std::vector<image::Xattr> xattrs;
    std::int64_t mtime = 1700000000;
    std::int64_t size = -1; // if >= 0, the size claimed in the header
};

enum class Filter { none, gzip, zstd, xz, bzip2 };

inline void write_tar(const fs::path& file, const std::vector<TarSpec>& specs,
                      Filter filter = Filter::none) {
    archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    switch (filter) {
    case Filter::none:
        break;
    case Filter::gzip:
        archive_write_add_filter_gzip(a);
        break;
    case Filter::zstd:
        archive_write_add_filter_zstd(a);
        break;
    case Filter::xz:
        archive_write_add_filter_xz(a);
        break;
    case Filter::bzip2:
        archive_write_add_filter_bzip2(a);
        break;
    }
    if (archive_write_open_filename(a, file.c_str()) != ARCHIVE_OK)
        throw Error(std::string("write_tar: ") + archive_error_string(a));
    for (const auto& s : specs) {
        archive_entry* e = archive_entry_new();
        archive_entry_copy_pathname(e, s.name.c_str());
        archive_entry_set_perm(e, s.mode);
        archive_entry_set_mtime(e, s.mtime, 0);
        archive_entry_set_uid(e, 1234);
        archive_entry_set_gid(e, 5678);
        using T = image::EntryType;
        switch (s.type) {
        case T::file:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e,
                                   s.size >= 0 ? s.size : static_cast<la_int64_t>(s.data.size()));
            for (const auto& x : s.sparse)
                archive_entry_sparse_add_entry(e, static_cast<la_int64_t>(x.offset),
                                               static_cast<la_int64_t>(x.length));
            break;
        case T::dir:
            archive_entry_set_filetype(e, AE_IFDIR);
            break;
        case T::symlink:
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_copy_symlink(e, s.link.c_str());
            break;
        case T::hardlink:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_copy_hardlink(e, s.link.c_str());
            break;
        case T::fifo:
            archive_entry_set_filetype(e, AE_IFIFO);
            break;
        case T::chardev:
            archive_entry_set_filetype(e, AE_IFCHR);
            archive_entry_set_rdevmajor(e, 1);
            archive_entry_set_rdevminor(e, 3);
            break;
        case T::blockdev:
            archive_entry_set_filetype(e, AE_IFBLK);
            break;
        default:
            archive_entry_set_filetype(e, AE_IFSOCK);
            break;
        }
        for (const auto& x : s.xattrs)
            archive_entry_xattr_add_entry(e, x.name.c_str(), x.value.data(), x.value.size());
        if (archive_write_header(a, e) != ARCHIVE_OK)
            throw Error(std::string("write_tar: ") + archive_error_string(a));
        if (s.type == T::file && !s.data.empty())
            archive_write_data(a, s.data.data(), s.data.size());
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

inline std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void spit(const fs::path& p, const std::string& data) {
    std::ofstream out(p, std::ios::binary);
    out << data;
}

// All data of the current entry of src.
inline std::string read_all(image::Source& src) {
    std::string out;
    char buf[4096];
    while (const std::size_t n = src.read(buf, sizeof buf))
        out.append(buf, n);
    return out;
}

// A Source over entries given in memory; file data from data[i].
class ListSource final : public image::Source {
public:
    ListSource(std::vector<image::Entry> entries, std::vector<std::string> data = {})
        : entries_(std::move(entries))
        , data_(std::move(data)) {
        data_.resize(entries_.size());
    }

    bool next(image::Entry& e) override {
        if (i_ + 1 >= static_cast<long>(entries_.size()))
            return false;
        e = entries_[static_cast<std::size_t>(++i_)];
        pos_ = 0;
        return true;
    }

    std::size_t read(void* buf, std::size_t n) override {
        const std::string& d = data_[static_cast<std::size_t>(i_)];
        n = std::min(n, d.size() - pos_);
        std::copy(d.data() + pos_, d.data() + pos_ + n, static_cast<char*>(buf));
        pos_ += n;
        return n;
    }

    void rewind() override { i_ = -1; }

    std::string describe() const override { return "list"; }

    // Point data at the entry a sink is being given (for feeding a sink directly).
    void select(std::size_t i) {
        i_ = static_cast<long>(i);
        pos_ = 0;
    }

private:
    std::vector<image::Entry> entries_;
    std::vector<std::string> data_;
    long i_ = -1;
    std::size_t pos_ = 0;
};

} // namespace ch::test

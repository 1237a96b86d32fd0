// sink_tar.cc: a tar archive as a Sink, written with libarchive in pax
// format (ustar headers where they suffice, pax records for long names,
// large sizes, xattrs and sparse maps). Compression follows the output name.
// Written to a staging file beside the destination and renamed at commit().
#include <algorithm>
#include <cstring>

#include <fcntl.h>

#include <archive.h>
#include <archive_entry.h>

#include "image/formats.hh"
#include "storage/publish.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

namespace ch::image {

namespace {

using ArchiveWriter = std::unique_ptr<archive, FreeWith<archive_write_free>>;
using ArchiveEntry = std::unique_ptr<archive_entry, FreeWith<archive_entry_free>>;

constexpr std::size_t copy_block = 1024 * 1024;

class TarSink final : public Sink {
public:
    TarSink(const fs::path& dest, TarCompression comp)
        : staged_(dest, storage::StagedKind::file)
        , fd_(open_at(AT_FDCWD, staged_.path(), O_WRONLY | O_TRUNC))
        , a_(archive_write_new())
        , buf_(copy_block) {
        if (!a_)
            fail("can't write ", dest.string(), ": out of memory");
        check(archive_write_set_format_pax_restricted(a_.get()), "");
        switch (comp) {
        case TarCompression::none:
            break;
        case TarCompression::gzip:
            check(archive_write_add_filter_gzip(a_.get()), "");
            // No time of writing in the gzip header: same entries, same bytes.
            check(archive_write_set_filter_option(a_.get(), "gzip", "timestamp", nullptr), "");
            break;
        case TarCompression::zstd:
            check(archive_write_add_filter_zstd(a_.get()), "");
            break;
        case TarCompression::xz:
            check(archive_write_add_filter_xz(a_.get()), "");
            break;
        }
        // No padding to 10 KiB records after the end: it only wastes space.
        check(archive_write_set_bytes_in_last_block(a_.get(), 1), "");
        check(archive_write_open_fd(a_.get(), fd_.get()), "");
    }

    void add(const Entry& e, Source& src) override {
        if (e.path.empty()) // the root: readers create it; "./" entries confuse some
            return;
        if (e.type == EntryType::whiteout)
            fail("can't remove ", printable(e.path), ": a tar archive can only add entries");
        const ArchiveEntry ae(archive_entry_new2(a_.get()));
        archive_entry_copy_pathname(ae.get(), e.path.c_str());
        archive_entry_set_perm(ae.get(), e.mode & 07777);
        archive_entry_set_uid(ae.get(), 0);
        archive_entry_set_gid(ae.get(), 0);
        archive_entry_set_mtime(ae.get(), static_cast<time_t>(e.mtime), 0);
        switch (e.type) {
        case EntryType::file:
            archive_entry_set_filetype(ae.get(), AE_IFREG);
            archive_entry_set_size(ae.get(), static_cast<la_int64_t>(e.size));
            if (e.sparse)
                for (const auto& x : *e.sparse)
                    archive_entry_sparse_add_entry(ae.get(), static_cast<la_int64_t>(x.offset),
                                                   static_cast<la_int64_t>(x.length));
            break;
        case EntryType::dir:
            archive_entry_set_filetype(ae.get(), AE_IFDIR);
            break;
        case EntryType::symlink:
            archive_entry_set_filetype(ae.get(), AE_IFLNK);
            archive_entry_copy_symlink(ae.get(), e.link_target.c_str());
            break;
        case EntryType::hardlink:
            archive_entry_set_filetype(ae.get(), AE_IFREG);
            archive_entry_copy_hardlink(ae.get(), e.link_target.c_str());
            archive_entry_set_size(ae.get(), 0);
            break;
        default:
            fail("can't add ", printable(e.path), ": a ", type_name(e.type),
                 " is not allowed in an image");
        }
        for (const auto& x : e.xattrs)
            archive_entry_xattr_add_entry(ae.get(), x.name.c_str(), x.value.data(), x.value.size());
        check(archive_write_header(a_.get(), ae.get()), e.path);
        if (e.type == EntryType::file)
            write_data(e, src);
        check(archive_write_finish_entry(a_.get()), e.path);
    }

    void commit() override {
        check(archive_write_close(a_.get()), "");
        a_.reset();
        staged_.publish();
    }

private:
    // libarchive's pax writer takes a sparse file's whole logical content
    // and skips the bytes that fall in holes, so holes are fed as zeros
    // (cheap: nothing is compressed or written for them).
    void write_data(const Entry& e, Source& src) {
        std::uint64_t pos = 0;
        auto feed = [&](std::uint64_t len, bool zeros) {
            while (len > 0) {
                const std::size_t want =
                    static_cast<std::size_t>(std::min<std::uint64_t>(len, buf_.size()));
                std::size_t n = want;
                if (zeros) {
                    if (zeros_.empty())
                        zeros_.assign(copy_block, '\0');
                } else {
                    n = src.read(buf_.data(), want);
                    if (n == 0)
                        fail("can't add ", printable(e.path), ": the source ended ", len,
                             " bytes early");
                }
                const la_ssize_t w =
                    archive_write_data(a_.get(), zeros ? zeros_.data() : buf_.data(), n);
                if (w < 0)
                    check(static_cast<int>(w), e.path);
                len -= n;
                pos += n;
            }
        };
        if (!e.sparse) {
            feed(e.size, false);
            return;
        }
        for (const auto& x : *e.sparse) {
            feed(x.offset - pos, true);
            feed(x.length, false);
        }
        // A trailing hole needs nothing: the sparse map records the size.
    }

    void check(int r, const std::string& entry) {
        if (r == ARCHIVE_OK)
            return;
        const char* msg = archive_error_string(a_.get());
        const std::string where =
            entry.empty() ? std::string() : cat("entry ", quote_name(entry), ": ");
        if (r == ARCHIVE_WARN && msg != nullptr && std::strstr(msg, "Can't translate") != nullptr) {
            // A name that is not valid in the locale's charset: libarchive
            // stores its bytes as they are (pax hdrcharset=BINARY), so
            // nothing is lost. ch-convert runs in C.UTF-8 for this reason.
            log::verbose(staged_.dest().string(), ": ", where, msg);
            return;
        }
        if (r == ARCHIVE_WARN) {
            log::warning(staged_.dest().string(), ": ", where, msg ? msg : "libarchive warning");
            return;
        }
        fail("can't write ", staged_.dest().string(), ": ", where, msg ? msg : "libarchive error");
    }

    storage::Staged staged_;
    Fd fd_;
    ArchiveWriter a_;
    std::vector<char> buf_;
    std::vector<char> zeros_;
};

} // namespace

std::optional<TarCompression> tar_compression_for(std::string_view name) {
    if (name.ends_with(".tar"))
        return TarCompression::none;
    if (name.ends_with(".tar.gz") || name.ends_with(".tgz"))
        return TarCompression::gzip;
    if (name.ends_with(".tar.zst"))
        return TarCompression::zstd;
    if (name.ends_with(".tar.xz"))
        return TarCompression::xz;
    return std::nullopt;
}

const char* tar_output_names() {
    return "*.tar, *.tar.gz, *.tgz, *.tar.zst, *.tar.xz";
}

std::unique_ptr<Sink> make_tar_sink(const fs::path& dest) {
    const auto comp = tar_compression_for(dest.filename().string());
    if (!comp)
        throw UsageError(cat("can't choose a tar compression for ", dest.string(),
                             ": the name must match one of ", tar_output_names()));
    return std::make_unique<TarSink>(dest, *comp);
}

std::unique_ptr<Sink> make_tar_sink(const fs::path& dest, TarCompression comp) {
    return std::make_unique<TarSink>(dest, comp);
}

} // namespace ch::image

// entry.hh: the entry stream. Every image format is a Source (directory, tar,
// SquashFS, storage image) or a Sink (directory, tar, SquashFS, storage); a
// conversion pulls entries from one source, passes each through the unpacking
// rules (unpack_rules.hh), and pushes it into one sink. N sources and M sinks,
// never N x M converters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace ch::image {

enum class EntryType {
    file,
    dir,
    symlink,
    hardlink, // link_target names an earlier entry
    // Produced by the unpacking rules from ".wh.NAME" and ".wh..wh..opq" for
    // paths that came from an earlier layer (OCI image-spec: a whiteout never
    // hides entries of its own layer). A sink removes path and everything
    // under it instead of creating anything.
    whiteout,
    // Present in some sources; the unpacking rules drop them.
    fifo,
    chardev,
    blockdev,
    socket,
};

const char* type_name(EntryType t);

struct Xattr {
    std::string name; // e.g. "user.foo"
    std::string value;
};

// A data region of a sparse file; everything between regions reads as zeros.
struct Extent {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
};

struct Entry {
    // Relative to the image root, '/'-separated, without a leading "/" or
    // "./"; "" is the root directory itself. After the unpacking rules: no
    // "." or ".." components, no empty components, and no component before
    // the last one is a symlink.
    std::string path;
    EntryType type = EntryType::file;
    mode_t mode = 0644; // permission bits only (07777)
    uid_t uid = 0;
    gid_t gid = 0;
    std::int64_t mtime = 0;  // seconds since the epoch
    std::uint64_t size = 0;  // regular files: logical size in bytes
    std::string link_target; // symlink: target as stored; hardlink: entry path
    std::vector<Xattr> xattrs;
    // Regular files only: when set, the file is sparse and its data (as read
    // from the source) is the concatenation of these regions, in order.
    std::optional<std::vector<Extent>> sparse;
    unsigned dev_major = 0, dev_minor = 0;

    bool is_file() const { return type == EntryType::file; }

    // Bytes that Source::read will deliver for this entry.
    std::uint64_t data_size() const;
};

class Source {
public:
    Source() = default;
    Source(const Source&) = delete;
    Source& operator=(const Source&) = delete;
    virtual ~Source() = default;
    // Fill e with the next entry; false at the end. Throws Error naming the
    // source and the entry on malformed input.
    virtual bool next(Entry& e) = 0;
    // Data of the current regular file (see Entry::data_size); 0 at its end.
    // Data not read before the next call to next() is skipped.
    virtual std::size_t read(void* buf, std::size_t n) = 0;
    // Start again from the first entry (for sinks that need two passes).
    virtual void rewind() = 0;
    // For messages: "image.tar.gz", "storage image debian:12".
    virtual std::string describe() const = 0;
};

class Sink {
public:
    Sink() = default;
    Sink(const Sink&) = delete;
    Sink& operator=(const Sink&) = delete;
    // Without commit(), everything written so far is removed: a failed
    // conversion leaves nothing behind.
    virtual ~Sink() = default;
    // Add one entry (already through the unpacking rules); a regular file's
    // data is read from src.
    virtual void add(const Entry& e, Source& src) = 0;
    // Finish and publish atomically at the destination.
    virtual void commit() = 0;
};

} // namespace ch::image

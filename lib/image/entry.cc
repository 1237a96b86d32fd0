// entry.cc: see entry.hh.
#include "image/entry.hh"

namespace ch::image {

const char* type_name(EntryType t) {
    switch (t) {
    case EntryType::file:
        return "file";
    case EntryType::dir:
        return "directory";
    case EntryType::symlink:
        return "symlink";
    case EntryType::hardlink:
        return "hard link";
    case EntryType::whiteout:
        return "whiteout";
    case EntryType::fifo:
        return "FIFO";
    case EntryType::chardev:
        return "character device";
    case EntryType::blockdev:
        return "block device";
    case EntryType::socket:
        return "socket";
    }
    return "unknown";
}

std::uint64_t Entry::data_size() const {
    if (type != EntryType::file)
        return 0;
    if (!sparse)
        return size;
    std::uint64_t total = 0;
    for (const auto& x : *sparse)
        total += x.length;
    return total;
}

} // namespace ch::image

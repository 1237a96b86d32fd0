// lock.hh: the storage lock. Writers of one storage directory (pulls,
// delete, reset) take an exclusive fcntl lock on STORAGE/lock, as
// Charliecloud does, so two pulls of one image at once run one after the
// other and both end with the same complete image. Open file description
// locks (F_OFD_SETLKW) are used rather than classic POSIX locks: they belong
// to the descriptor, not the process, so closing some other descriptor of
// the same file can't drop the lock, and the kernel releases them when the
// holder dies, even by SIGKILL.
#pragma once

#include <filesystem>

#include "util/fd.hh"

namespace ch::storage {

namespace fs = std::filesystem;

enum class LockMode { shared, exclusive };

class StorageLock {
public:
    // Lock STORAGE/lock (creating it 0600), waiting for other holders; logs
    // once that it waits. storage must exist and be checked already.
    StorageLock(const fs::path& storage, LockMode mode);
    StorageLock(const StorageLock&) = delete;
    StorageLock& operator=(const StorageLock&) = delete;
    ~StorageLock() = default; // closing the descriptor releases the lock

    // Whether another descriptor holds a lock that conflicts with mode.
    static bool held_by_other(const fs::path& storage, LockMode mode);

private:
    Fd fd_;
};

} // namespace ch::storage

// lock.cc: see lock.hh.
#include "storage/lock.hh"

#include <cerrno>

#include <fcntl.h>
#include <unistd.h>

#include "util/error.hh"
#include "util/log.hh"

namespace ch::storage {

namespace {

struct flock lock_request(LockMode mode) {
    struct flock fl {};

    fl.l_type = mode == LockMode::exclusive ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET; // the whole file
    return fl;
}

Fd open_lock_file(const fs::path& storage) {
    // O_NOFOLLOW: storage is checked, but the lock file inside it is a name
    // like any other.
    return open_at(AT_FDCWD, storage / "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
}

} // namespace

StorageLock::StorageLock(const fs::path& storage, LockMode mode)
    : fd_(open_lock_file(storage)) {
    struct flock fl = lock_request(mode);
    if (::fcntl(fd_.get(), F_OFD_SETLK, &fl) == 0)
        return;
    if (errno != EAGAIN && errno != EACCES)
        throw_errno("can't lock ", (storage / "lock").string());
    log::info("waiting for another ch-image using ", storage.string());
    for (;;) {
        fl = lock_request(mode);
        if (::fcntl(fd_.get(), F_OFD_SETLKW, &fl) == 0)
            return;
        if (errno != EINTR)
            throw_errno("can't lock ", (storage / "lock").string());
    }
}

bool StorageLock::held_by_other(const fs::path& storage, LockMode mode) {
    const Fd fd = open_lock_file(storage);
    struct flock fl = lock_request(mode);
    if (::fcntl(fd.get(), F_OFD_GETLK, &fl) != 0)
        throw_errno("can't test the lock ", (storage / "lock").string());
    return fl.l_type != F_UNLCK;
}

} // namespace ch::storage

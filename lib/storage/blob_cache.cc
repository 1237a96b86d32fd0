// blob_cache.cc: see blob_cache.hh for the rules. Partials are opened
// without following symlinks and locked before use; the lock, not the name,
// says whether someone is writing.
#include "storage/blob_cache.hh"

#include <cerrno>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "storage/layout.hh"
#include "util/error.hh"
#include "util/strings.hh"

namespace ch::storage {

Sha256::Sha256()
    : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_)
        fail("can't hash: out of memory");
    reset();
}

Sha256::~Sha256() {
    EVP_MD_CTX_free(ctx_);
}

void Sha256::reset() {
    if (EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1)
        fail("can't hash: libcrypto has no sha256");
}

void Sha256::update(std::span<const std::byte> d) {
    EVP_DigestUpdate(ctx_, d.data(), d.size());
}

void Sha256::update(std::string_view d) {
    EVP_DigestUpdate(ctx_, d.data(), d.size());
}

std::string Sha256::hex_digest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned i = 0; i < len; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 0xf];
    }
    return out;
}

std::string sha256_digest(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.hex_digest();
}

namespace {

// The registry's is_digest, repeated: storage sits below registry.
bool is_sha256(std::string_view s) {
    if (s.size() != 7 + 64 || !s.starts_with("sha256:"))
        return false;
    for (char c : s.substr(7))
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    return true;
}

void check_digest(std::string_view digest) {
    if (!is_sha256(digest))
        fail("can't use blob '", printable(digest.substr(0, 80)), "': not a sha256 digest");
}

std::string file_name(std::string_view digest) {
    return cat("sha256-", digest.substr(7));
}

constexpr std::string_view part_prefix = "part-";

} // namespace

BlobCache::BlobCache(const fs::path& storage)
    : dir_(storage / "dlcache") {
    prepare_images_dir(storage); // creates and checks STORAGE
    if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST)
        throw_errno("can't create download cache ", dir_);
    if (!check_trusted(dir_, ::geteuid(), "download cache"))
        fail("can't create download cache ", dir_, ": removed while being created");
}

bool BlobCache::has(std::string_view digest) const {
    struct stat st {};

    return ::lstat(path(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

fs::path BlobCache::path(std::string_view digest) const {
    check_digest(digest);
    return dir_ / file_name(digest);
}

void BlobCache::sweep() {
    DIR* d = ::opendir(dir_.c_str());
    if (!d)
        throw_errno("can't read download cache ", dir_);
    std::vector<std::string> names;
    while (const dirent* e = ::readdir(d)) {
        const std::string_view n = e->d_name;
        if (n.starts_with(part_prefix))
            names.emplace_back(n);
    }
    ::closedir(d);
    for (const auto& n : names) {
        const auto digest = cat("sha256:", std::string_view(n).substr(part_prefix.size() + 7));
        if (!is_sha256(digest) || !has(digest))
            continue;
        Fd fd = try_open_at(AT_FDCWD, dir_ / n, O_RDONLY | O_NOFOLLOW);
        if (fd && ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0)
            ::unlink((dir_ / n).c_str());
    }
}

BlobCache::Partial::Partial(BlobCache& cache, std::string_view digest, std::uint64_t size)
    : cache_(cache)
    , digest_(digest)
    , size_(size) {
    const fs::path final_path = cache.path(digest);
    part_ = cache.dir() / cat(part_prefix, file_name(digest));
    while (true) {
        if (cache.has(digest)) {
            done_ = true;
            return;
        }
        fd_ = open_at(AT_FDCWD, part_, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
        int r;
        while ((r = ::flock(fd_.get(), LOCK_EX)) != 0 && errno == EINTR) {
        }
        if (r != 0)
            throw_errno("can't lock ", part_);

        // The holder before us may have finished (and renamed the partial
        // away) while we waited: then the name is gone or is someone else's.
        struct stat by_fd {
        }, by_name{};

        if (::fstat(fd_.get(), &by_fd) != 0)
            throw_errno("can't stat ", part_);
        if (::lstat(part_.c_str(), &by_name) != 0 || by_fd.st_ino != by_name.st_ino ||
            by_fd.st_dev != by_name.st_dev) {
            fd_.reset();
            continue;
        }
        if (!S_ISREG(by_fd.st_mode) || by_fd.st_uid != ::geteuid())
            fail("can't use partial download ", part_, ": not a regular file of this user's");
        if (cache.has(digest)) {
            ::unlink(part_.c_str());
            fd_.reset();
            done_ = true;
            return;
        }
        // Re-hash what a killed transfer left, so the resumed transfer's
        // digest covers every byte; a partial longer than the blob is junk.
        if (static_cast<std::uint64_t>(by_fd.st_size) > size_) {
            restart();
            return;
        }
        std::vector<std::byte> buf(1 << 18);
        std::uint64_t got = 0;
        while (true) {
            const ssize_t n = ::pread(fd_.get(), buf.data(), buf.size(), static_cast<off_t>(got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw_errno("can't read partial download ", part_);
            if (n == 0)
                break;
            hash_.update(std::span<const std::byte>(buf.data(), static_cast<std::size_t>(n)));
            got += static_cast<std::uint64_t>(n);
        }
        written_ = got;
        if (::lseek(fd_.get(), static_cast<off_t>(got), SEEK_SET) < 0)
            throw_errno("can't seek in partial download ", part_);
        return;
    }
}

BlobCache::Partial::~Partial() = default;

void BlobCache::Partial::write(std::span<const std::byte> data) {
    if (done_ || !fd_)
        fail("can't write blob ", digest_, ": the transfer is over");
    if (data.size() > size_ - written_) {
        discard();
        fail("blob ", digest_, " is longer than the ", size_, " bytes the manifest declares");
    }
    const std::byte* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
        const ssize_t n = ::write(fd_.get(), p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            const int err = errno;
            if (err == ENOSPC || err == EDQUOT) {
                disk_full_ = true;
                discard();
            }
            throw SysError(err, cat("can't write ", part_.string()));
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    hash_.update(data);
    written_ += data.size();
}

void BlobCache::Partial::restart() {
    if (::ftruncate(fd_.get(), 0) != 0 || ::lseek(fd_.get(), 0, SEEK_SET) != 0)
        throw_errno("can't truncate ", part_);
    hash_.reset();
    written_ = 0;
}

void BlobCache::Partial::finish() {
    if (done_)
        return;
    if (written_ != size_) {
        discard();
        fail("blob ", digest_, " has ", written_, " bytes, not the ", size_,
             " the manifest declares");
    }
    const std::string got = hash_.hex_digest();
    if (got != digest_) {
        discard();
        fail("digest mismatch: blob ", digest_, " hashes to ", got);
    }
    if (::rename(part_.c_str(), cache_.path(digest_).c_str()) != 0)
        throw_errno("can't rename ", part_, " to ", cache_.path(digest_));
    fd_.reset();
    done_ = true;
}

void BlobCache::Partial::discard() {
    if (fd_) {
        ::unlink(part_.c_str());
        fd_.reset();
    }
}

} // namespace ch::storage

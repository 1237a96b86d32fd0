// blob_cache.hh: the content-addressed download cache, STORAGE/dlcache.
// A finished blob is dlcache/sha256-HEX and its bytes hash to HEX: it gets
// its name by one rename after the check, so a kill at any moment leaves
// either nothing or a checked blob under that name. Transfers in progress
// are dlcache/part-sha256-HEX, each held under an flock, so two pulls of the
// same image share the work (the second waits, then finds the blob done) and
// a killed pull's partial is resumed by the next one.
//
// A full disk (ENOSPC, EDQUOT) removes the partial: "nothing half-written"
// matters more than resuming, and the space is the user's to get back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "util/fd.hh"

// libcrypto's context, declared here so users of the cache need not include
// OpenSSL's headers.
using EVP_MD_CTX = struct evp_md_ctx_st;

namespace ch::storage {

namespace fs = std::filesystem;

// Incremental sha256 (libcrypto EVP). hex_digest() may be called once.
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(std::span<const std::byte>);
    void update(std::string_view);
    std::string hex_digest(); // "sha256:HEX"
    void reset();             // start over, as if new

private:
    EVP_MD_CTX* ctx_;
};

std::string sha256_digest(std::string_view data); // "sha256:HEX"

class BlobCache {
public:
    // STORAGE/dlcache, created 0700 if missing; STORAGE is checked as
    // layout's prepare_images_dir does.
    explicit BlobCache(const fs::path& storage);

    const fs::path& dir() const { return dir_; }

    // digest must be "sha256:HEX" (ch::Error otherwise).
    bool has(std::string_view digest) const;
    fs::path path(std::string_view digest) const;

    // A transfer into the cache. Opening takes the partial's flock (waiting
    // for another process's transfer of the same blob) and re-hashes what an
    // earlier, killed transfer left, so offset() bytes need not be fetched
    // again. If the blob was finished meanwhile, done() is true at once.
    class Partial {
    public:
        Partial(BlobCache& cache, std::string_view digest, std::uint64_t size);
        Partial(const Partial&) = delete;
        Partial& operator=(const Partial&) = delete;
        ~Partial(); // releases the lock; the partial stays for a resume

        bool done() const { return done_; }

        std::uint64_t offset() const { return written_; }

        // Appends; throws ch::Error if this would pass the declared size
        // (the partial is then removed), ch::SysError on write failure
        // (ENOSPC/EDQUOT: the partial is removed).
        void write(std::span<const std::byte> data);
        // Throw away what was written (a server that ignored Range).
        void restart();
        // Checks size and digest; on success renames into place. On mismatch
        // removes the partial and throws ch::Error ("digest mismatch: ...").
        void finish();
        // Removes the partial (the transfer can't be resumed usefully).
        void discard();

        bool disk_full() const { return disk_full_; } // the last write failed for space

    private:
        BlobCache& cache_;
        std::string digest_;
        std::uint64_t size_, written_ = 0;
        fs::path part_;
        Fd fd_;
        Sha256 hash_;
        bool done_ = false, disk_full_ = false;
    };

    // Removes partials nobody holds whose blobs are already finished.
    void sweep();

private:
    fs::path dir_;
};

} // namespace ch::storage

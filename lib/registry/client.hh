// client.hh: the OCI Distribution client, the facade of lib/registry.
// ch-image builds Options (from the command line, CH_* variables and the
// configuration file), makes one Client per command and asks it for
// manifests and blobs. Blobs go into the storage's content-addressed cache,
// checked (size and sha256) while they stream; nothing unchecked is ever
// visible under its digest.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "registry/manifest.hh"
#include "registry/reference.hh"
#include "util/error.hh"

namespace ch::config {
class Config;
}

namespace ch::storage {
class BlobCache;
}

namespace ch::registry {

// Failures users can act on, each with its own kind so that ch-image (and the
// tests) can tell them apart without parsing messages. The message says what
// happened and, where the registry sent one, its own message.
enum class ErrorKind {
    manifest_unknown, // no such tag or digest (MANIFEST_UNKNOWN, 404)
    name_unknown,     // no such repository (NAME_UNKNOWN)
    unauthorized,     // 401/403 after authenticating, or credentials refused
    rate_limited,     // 429 after all retries
    unreachable,      // DNS, connection refused, timeouts after all retries
    tls,              // certificate or handshake failure
    digest_mismatch,  // bytes don't hash to the digest, or wrong size
    disk_full,        // ENOSPC/EDQUOT while writing a blob
    protocol,         // anything else the registry did wrong (bad JSON, schema 1, 5xx...)
};

class RegistryError : public Error {
public:
    RegistryError(ErrorKind kind, std::string msg)
        : Error(std::move(msg))
        , kind_(kind) {}

    ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

std::string_view kind_name(ErrorKind); // "manifest unknown", "unauthorized", ...

struct Credentials {
    std::string username, password;
};

struct Options {
    std::string arch;                  // "amd64", "arm64/v8"; empty: host_arch()
    bool tls_verify = true;            // false: --tls-no-verify
    std::string ca_file;               // extra CA bundle; empty: the system store only
    std::vector<std::string> insecure; // HOST[:PORT] spoken to over plain HTTP (warned)
    std::map<std::string, std::string>
        mirrors;                            // HOST -> MIRROR[:PORT]; "docker.io" means Docker Hub
    std::optional<Credentials> credentials; // CH_IMAGE_USERNAME/_PASSWORD or --auth: any host
    std::map<std::string, Credentials>
        host_credentials;                // registry.auth: per host, wins over credentials
    int parallel = 4;                    // concurrent blob transfers
    int retries = 5;                     // per request, after the first try
    std::size_t max_manifest = 4u << 20; // bytes; manifests and indexes
    int connect_timeout = 30;            // seconds
    int low_speed_time = 60;             // seconds under 1 KiB/s count as a timeout

    // Settings from the configuration (registry.*), then CH_IMAGE_USERNAME
    // and CH_IMAGE_PASSWORD (both or neither) over them. The command line is
    // ch-image's to apply afterwards. Logs at -v where each came from.
    static Options from(const config::Config&);
};

// Called from the thread that called Client::fetch, between transfers: keep
// it quick. Each blob gets begin, any number of advance/retry, then done
// (or nothing more if the fetch throws).
class Progress {
public:
    virtual ~Progress() = default;

    virtual void begin(const Blob&, std::uint64_t /*already*/) {
    } // already: cached or resumed bytes

    virtual void advance(const Blob&, std::uint64_t /*n*/) {} // n more bytes arrived

    virtual void done(const Blob&) {} // in the cache, checked

    virtual void retry(const Blob&, std::string_view /*why*/) {} // restarting after why
};

class Client {
public:
    explicit Client(Options);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    const Options& options() const;

    // The image manifest for ref and options().arch: a tag or digest, through
    // an index if there is one (chosen by architecture). Digests are checked.
    Manifest resolve(const Reference& ref);

    // HEAD of ref's manifest: its digest (Docker-Content-Digest) without a
    // GET, which registries count against rate limits. Compare it with
    // Manifest::top_digest of the cached image. nullopt if the registry sent
    // no digest; throws RegistryError as resolve does.
    std::optional<std::string> head_digest(const Reference& ref);

    // A small blob (the config JSON) into memory, size and digest checked;
    // blob.size > max is refused before any request.
    std::string fetch_small(const Reference& ref, const Blob& blob, std::size_t max);

    // Blobs into cache, options().parallel at a time, each checked, retried
    // and resumed. Blobs already in cache get begin(already = size) and done.
    // Throws the first RegistryError after the other transfers have stopped;
    // finished blobs stay in the cache.
    void fetch(const Reference& ref, const std::vector<Blob>& blobs, storage::BlobCache& cache,
               Progress& progress);

    // Counters, for tests and -v: requests made per method ("GET", "HEAD").
    std::map<std::string, int> request_counts() const;

    struct Impl;

private:
    std::optional<std::string> head_digest_(const Reference& ref);
    std::string fetch_small_(const Reference& ref, const Blob& blob, std::size_t max);

    std::unique_ptr<Impl> impl_;
};

} // namespace ch::registry

// reference.hh: what an image reference names. The grammar is
// [host[:port]/]path[:tag][@sha256:HEX], with Docker Hub's defaults
// (registry-1.docker.io, library/, latest). References come from users and
// from job scripts, so everything is checked before it goes into a URL.
#pragma once

#include <string>
#include <string_view>

namespace ch::registry {

inline constexpr std::string_view docker_hub = "registry-1.docker.io";

struct Reference {
    std::string host;   // "registry-1.docker.io", "127.0.0.1:5000", "[::1]:5000"
    std::string path;   // "library/alpine"
    std::string tag;    // "latest" unless a digest was given alone
    std::string digest; // "sha256:HEX" or empty

    // Throws ch::UsageError naming the reference and what is wrong with it.
    // The first component is a host if it has a '.' or a ':', or is
    // "localhost" (Docker's rule); "docker.io" and "index.docker.io" mean
    // Docker Hub. '%' and '+' (storage's file-name form) read as '/' and ':'.
    static Reference parse(std::string_view text);

    // Full form: "registry-1.docker.io/library/alpine:3.19",
    // "host/path@sha256:HEX" ("host/path:tag@sha256:HEX" if both were given).
    std::string str() const;
    // Short form without Docker Hub's defaults, as users type it: "alpine:3.19".
    std::string familiar() const;

    // What /manifests/ takes: the digest if there is one, else the tag.
    const std::string& version() const { return digest.empty() ? tag : digest; }

    bool operator==(const Reference&) const = default;
};

// Whether s is "sha256:" and 64 lower-case hex digits.
bool is_digest(std::string_view s);

} // namespace ch::registry

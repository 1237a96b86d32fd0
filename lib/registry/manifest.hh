// manifest.hh: image manifests and indexes (Docker v2 schema 2, OCI), and the
// choice of one manifest for an architecture. Pure: parsing and choosing only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ch::registry {

namespace media {
inline constexpr std::string_view docker_manifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view docker_list =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view docker_v1 =
    "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr std::string_view docker_v1_signed =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
inline constexpr std::string_view oci_manifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view oci_index = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view docker_config = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view oci_config = "application/vnd.oci.image.config.v1+json";
} // namespace media

// The Accept header for manifests: indexes and manifests, both families.
std::string manifest_accept();

struct Blob {
    std::string digest; // "sha256:HEX", checked
    std::uint64_t size = 0;
    std::string media_type;
};

// Whether a layer media type is one we can unpack (tar, gzip, zstd, and
// Docker's; foreign/non-distributable layers are refused by name).
bool is_layer_type(std::string_view media_type);

struct Manifest {
    std::string digest;     // sha256 of raw
    std::string media_type; // docker_manifest or oci_manifest
    std::string raw;        // the bytes as served (the digest covers them)
    Blob config;
    std::vector<Blob> layers; // base first
    // Filled in by Client::resolve:
    std::string top_digest; // what the tag pointed to: the index's digest, or this one's
    std::string platform;   // "linux/amd64", "linux/arm64/v8"; empty if the tag had no index
};

struct Platform {
    std::string os, arch, variant; // "linux", "arm64", "v8"
    std::string str() const;       // "linux/arm64/v8"
};

struct IndexEntry {
    Blob blob;
    std::optional<Platform> platform;
};

// What a manifest endpoint returned. Throws ch::Error naming what is wrong:
// schema 1 ("schema 1 manifests are not supported: ..."), unknown media
// type, bad JSON, bad digests. content_type is the HTTP header, used when the
// body has no mediaType.
enum class ManifestKind { manifest, index };
ManifestKind manifest_kind(std::string_view raw, std::string_view content_type);
Manifest parse_manifest(std::string_view raw, std::string_view content_type);
std::vector<IndexEntry> parse_index(std::string_view raw);

// "amd64", "arm64/v8", "arm/v7", "386", "ppc64le", "s390x", ... from uname -m.
// Throws ch::Error for a machine we can't name.
std::string host_arch();

// The entry for arch ("amd64", "arm64/v8", "arm64", "arm/v7") on linux.
// arm64 and arm64/v8 match each other, as do a missing variant and the
// architecture's default (arm64 → v8, arm → v7). Throws ch::Error listing the
// architectures the index has if none matches.
const IndexEntry& select_platform(const std::vector<IndexEntry>& index, std::string_view arch);

} // namespace ch::registry

// metadata.hh: what a pulled image keeps of its OCI config, in the image
// itself: /ch/metadata.json (for ch-image inspect, and for people) and
// /ch/environment (sorted NAME=VALUE lines, read by ch-run --set-env with no
// argument, as in Charliecloud). Pure: JSON in, JSON and text out.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ch::image {

struct Metadata {
    std::string ref;              // as pulled, e.g. "127.0.0.1:5000/alpine:3.19"
    std::string arch;             // "amd64", "arm64/v8" (with the config's variant)
    std::vector<std::string> env; // "NAME=VALUE", as the config lists them
    std::string cwd;              // WorkingDir; "" if unset
    std::vector<std::string> entrypoint, cmd;
    std::map<std::string, std::string> labels;
    std::vector<std::string> volumes; // sorted
    std::string shell;                // Shell, joined with spaces; "" if unset
    std::string arch_requested;       // what the pull asked for (-a, or the host's)
    std::string top_digest;           // what the tag pointed to: index or manifest
    std::string manifest_digest, config_digest;
    std::vector<std::string> layer_digests;
    std::uint64_t history_len = 0; // entries of the config's history (optional)
};

// The largest config accepted (the registry client bounds the download too).
inline constexpr std::size_t max_config_bytes = 4 * 1024 * 1024;

// Read an OCI or Docker image config. history, config and every field in
// it are optional (the image spec says so); wrong types are an Error naming
// the field.
Metadata metadata_from_config(std::string_view config_json);

// /ch/metadata.json: keys sorted, two-space indent, final newline.
std::string metadata_json(const Metadata& m);
// Back from metadata_json's output (ch-image inspect, tests).
Metadata parse_metadata_json(std::string_view json, std::string_view what);

// /ch/environment: the env entries sorted by name, one per line. Entries
// without '=' or with a newline (which ch-run could not read back) are
// dropped and named in dropped.
std::string environment_text(const std::vector<std::string>& env,
                             std::vector<std::string>* dropped = nullptr);

} // namespace ch::image

// manifest.cc: reading manifests and indexes. The JSON comes from a registry
// (or anything a redirect or mirror leads to), so every field is type-checked
// before use and every digest and size validated.
#include "registry/manifest.hh"

#include <algorithm>

#include <sys/utsname.h>

#include <nlohmann/json.hpp>

#include "registry/reference.hh"
#include "storage/blob_cache.hh"
#include "util/error.hh"
#include "util/strings.hh"

namespace ch::registry {

using nlohmann::json;

namespace {

constexpr std::size_t max_layers = 1000;
constexpr std::size_t max_index_entries = 1000;

json parse_json(std::string_view raw, std::string_view what) {
    auto j = json::parse(raw, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        fail(what, " is not a JSON object");
    return j;
}

std::string get_string(const json& j, const char* key, std::string_view what) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        fail(what, " has no string '", key, "'");
    return it->get<std::string>();
}

std::string opt_string(const json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Blob parse_descriptor(const json& j, std::string_view what) {
    if (!j.is_object())
        fail(what, " is not an object");
    Blob b;
    b.digest = get_string(j, "digest", what);
    if (!is_digest(b.digest))
        fail(what, " has an unsupported digest '", printable(b.digest.substr(0, 80)),
             "' (not sha256: and 64 lower-case hex digits)");
    const auto size = j.find("size");
    if (size == j.end() || !size->is_number_unsigned())
        fail(what, " has no size");
    b.size = size->get<std::uint64_t>();
    b.media_type = opt_string(j, "mediaType");
    return b;
}

[[noreturn]] void schema1() {
    fail("the registry sent a schema 1 manifest, which is not supported (it has been deprecated "
         "since 2017 and carries no image configuration); push the image again with a current "
         "tool to get a schema 2 or OCI manifest");
}

} // namespace

std::string manifest_accept() {
    return cat(media::oci_index, ", ", media::docker_list, ", ", media::oci_manifest, ", ",
               media::docker_manifest);
}

bool is_layer_type(std::string_view t) {
    static constexpr std::string_view ok[] = {
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        // Deprecated, but identical in content to the above.
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    };
    return std::find(std::begin(ok), std::end(ok), t) != std::end(ok);
}

std::string Platform::str() const {
    return variant.empty() ? cat(os, "/", arch) : cat(os, "/", arch, "/", variant);
}

ManifestKind manifest_kind(std::string_view raw, std::string_view content_type) {
    const json j = parse_json(raw, "manifest");
    std::string type = opt_string(j, "mediaType");
    if (type.empty()) {
        // Strip parameters ("; charset=utf-8").
        type = std::string(content_type.substr(0, content_type.find(';')));
        while (!type.empty() && type.back() == ' ')
            type.pop_back();
    }
    if (const auto v = j.find("schemaVersion"); v != j.end() && v->is_number() && *v == 1)
        schema1();
    if (type == media::docker_v1 || type == media::docker_v1_signed || j.contains("fsLayers"))
        schema1();
    if (type == media::docker_list || type == media::oci_index)
        return ManifestKind::index;
    if (type == media::docker_manifest || type == media::oci_manifest)
        return ManifestKind::manifest;
    // Media types are optional in OCI documents: decide by shape.
    if (type.empty() || type == "application/json" || type == "application/octet-stream") {
        if (j.contains("manifests"))
            return ManifestKind::index;
        if (j.contains("layers") && j.contains("config"))
            return ManifestKind::manifest;
    }
    fail("unsupported manifest media type '", printable(type.substr(0, 120)), "'");
}

Manifest parse_manifest(std::string_view raw, std::string_view content_type) {
    if (manifest_kind(raw, content_type) != ManifestKind::manifest)
        fail("expected an image manifest, got an index");
    const json j = parse_json(raw, "manifest");
    const auto v = j.find("schemaVersion");
    if (v == j.end() || !v->is_number_integer() || *v != 2)
        fail("manifest has no schemaVersion 2");
    Manifest m;
    m.raw = std::string(raw);
    m.digest = storage::sha256_digest(raw);
    m.media_type = opt_string(j, "mediaType");
    if (m.media_type.empty())
        m.media_type = std::string(media::oci_manifest);
    const auto cfg = j.find("config");
    if (cfg == j.end())
        fail("manifest has no config");
    m.config = parse_descriptor(*cfg, "manifest's config");
    if (!m.config.media_type.empty() && m.config.media_type != media::docker_config &&
        m.config.media_type != media::oci_config)
        fail("manifest's config has media type '", printable(m.config.media_type.substr(0, 120)),
             "', not an image configuration (is this an artifact, not an image?)");
    const auto layers = j.find("layers");
    if (layers == j.end() || !layers->is_array())
        fail("manifest has no layers");
    if (layers->size() > max_layers)
        fail("manifest has ", layers->size(), " layers; at most ", max_layers, " are supported");
    for (std::size_t i = 0; i < layers->size(); ++i) {
        Blob b = parse_descriptor((*layers)[i], cat("manifest's layer ", i + 1));
        if (!b.media_type.empty() && !is_layer_type(b.media_type))
            fail("manifest's layer ", i + 1, " has unsupported media type '",
                 printable(b.media_type.substr(0, 120)), "'");
        m.layers.push_back(std::move(b));
    }
    return m;
}

std::vector<IndexEntry> parse_index(std::string_view raw) {
    const json j = parse_json(raw, "index");
    const auto ms = j.find("manifests");
    if (ms == j.end() || !ms->is_array())
        fail("index has no manifests");
    if (ms->size() > max_index_entries)
        fail("index has ", ms->size(), " entries; at most ", max_index_entries, " are supported");
    std::vector<IndexEntry> out;
    for (std::size_t i = 0; i < ms->size(); ++i) {
        const auto& e = (*ms)[i];
        IndexEntry ie{parse_descriptor(e, cat("index entry ", i + 1)), std::nullopt};
        if (const auto p = e.find("platform"); p != e.end() && p->is_object())
            ie.platform = Platform{opt_string(*p, "os"), opt_string(*p, "architecture"),
                                   opt_string(*p, "variant")};
        out.push_back(std::move(ie));
    }
    return out;
}

std::string host_arch() {
    struct utsname u {};

    if (::uname(&u) != 0)
        throw_errno("can't get the host's architecture (uname)");
    const std::string_view m = u.machine;
    if (m == "x86_64")
        return "amd64";
    if (m == "aarch64" || m == "armv8l" || m == "arm64")
        return "arm64/v8";
    if (m == "armv7l" || m == "aarch32")
        return "arm/v7";
    if (m == "armv6l")
        return "arm/v6";
    if (m == "armv5l" || m == "armv5tel")
        return "arm/v5";
    if (m == "i386" || m == "i486" || m == "i586" || m == "i686")
        return "386";
    if (m == "ppc64le" || m == "s390x" || m == "mips64le" || m == "riscv64" || m == "loong64")
        return std::string(m);
    fail("can't name the host's architecture '", printable(m), "' for a registry; use --arch");
}

namespace {

// "arm64/v8" -> {arm64, v8}; the default variant filled in where there is one.
std::pair<std::string, std::string> split_arch(std::string_view a) {
    std::string arch(a.substr(0, a.find('/'))), variant;
    if (const auto slash = a.find('/'); slash != std::string_view::npos)
        variant = std::string(a.substr(slash + 1));
    if (variant.empty()) {
        if (arch == "arm64")
            variant = "v8";
        else if (arch == "arm")
            variant = "v7";
    }
    return {arch, variant};
}

} // namespace

const IndexEntry& select_platform(const std::vector<IndexEntry>& index, std::string_view arch) {
    const auto want = split_arch(arch);
    std::vector<std::string> seen;
    for (const auto& e : index) {
        if (!e.platform)
            continue;
        if (e.platform->os != "linux") {
            if (e.platform->os != "unknown") // attestations: "unknown/unknown"
                seen.push_back(e.platform->str());
            continue;
        }
        if (split_arch(cat(e.platform->arch, "/", e.platform->variant)) == want)
            return e;
        seen.push_back(e.platform->str());
    }
    std::string list;
    for (const auto& s : seen)
        list += cat(list.empty() ? "" : ", ", printable(s));
    fail("the image has no variant for linux/", printable(arch),
         " (it has: ", list.empty() ? "none with a platform" : list, "); use --arch");
}

} // namespace ch::registry

// manifest_test.cc: manifests, indexes, platform choice, media types and
// compression by content.
#include <array>

#include <doctest/doctest.h>

#include "registry/compression.hh"
#include "registry/manifest.hh"
#include "storage/blob_cache.hh"
#include "util/error.hh"

using namespace ch;
using namespace ch::registry;

namespace {

std::string d(char c) {
    return "sha256:" + std::string(64, c);
}

std::string
oci_manifest(const std::string& layer_type = "application/vnd.oci.image.layer.v1.tar+gzip") {
    return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
      "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
           d('c') + R"(","size":123},
      "layers":[{"mediaType":")" +
           layer_type + R"(","digest":")" + d('1') + R"(","size":1000},
                {"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":")" +
           d('2') + R"(","size":2000}]})";
}

std::string index_of(const std::string& entries) {
    return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)" +
           entries + "]}";
}

std::string entry(char c, const std::string& arch, const std::string& variant = "",
                  const std::string& os = "linux") {
    return R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + d(c) +
           R"(","size":500,"platform":{"os":")" + os + R"(","architecture":")" + arch + "\"" +
           (variant.empty() ? "" : R"(,"variant":")" + variant + "\"") + "}}";
}

} // namespace

TEST_CASE("manifest: OCI manifest") {
    const auto raw = oci_manifest();
    CHECK(manifest_kind(raw, "") == ManifestKind::manifest);
    const auto m = parse_manifest(raw, "");
    CHECK(m.digest == storage::sha256_digest(raw));
    CHECK(m.raw == raw);
    CHECK(m.media_type == media::oci_manifest);
    CHECK(m.config.digest == d('c'));
    CHECK(m.config.size == 123);
    REQUIRE(m.layers.size() == 2);
    CHECK(m.layers[0].digest == d('1'));
    CHECK(m.layers[1].size == 2000);
}

TEST_CASE("manifest: Docker schema 2, media type from Content-Type") {
    const std::string raw = R"({"schemaVersion":2,
      "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":")" +
                            d('c') + R"(","size":5},
      "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":")" +
                            d('1') + R"(","size":7}]})";
    CHECK(
        manifest_kind(raw, "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8") ==
        ManifestKind::manifest);
    const auto m = parse_manifest(raw, "application/vnd.docker.distribution.manifest.v2+json");
    CHECK(m.layers.size() == 1);
}

TEST_CASE("manifest: schema 1 is refused with a clear message") {
    const std::string v1 =
        R"({"schemaVersion":1,"name":"x","tag":"y","fsLayers":[{"blobSum":")" + d('1') + R"("}]})";
    CHECK_THROWS_WITH_AS(
        manifest_kind(v1, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        doctest::Contains("schema 1"), Error);
    CHECK_THROWS_WITH_AS(parse_manifest(v1, ""), doctest::Contains("schema 1"), Error);
}

TEST_CASE("manifest: bad input") {
    CHECK_THROWS_AS(parse_manifest("", ""), Error);
    CHECK_THROWS_AS(parse_manifest("[]", ""), Error);
    CHECK_THROWS_AS(
        parse_manifest("{\"schemaVersion\":2}", "application/vnd.oci.image.manifest.v1+json"),
        Error);
    CHECK_THROWS_WITH_AS(manifest_kind(R"({"mediaType":"text/html"})", ""),
                         doctest::Contains("unsupported"), Error);
    // Unknown or foreign layer types, bad digests, negative sizes.
    CHECK_THROWS_AS(
        parse_manifest(oci_manifest("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
                       ""),
        Error);
    auto raw = oci_manifest();
    CHECK_THROWS_AS(
        parse_manifest(std::string(raw).replace(raw.find(d('1')), 71, "sha256:../../etc"), ""),
        Error);
    CHECK_THROWS_AS(parse_manifest(std::string(raw).replace(raw.find("1000"), 4, "-1"), ""), Error);
    CHECK_THROWS_AS(parse_manifest(std::string(raw).replace(raw.find("1000"), 4, "\"1\""), ""),
                    Error);
    // An artifact, not an image.
    raw = std::string(raw).replace(raw.find("application/vnd.oci.image.config.v1+json"), 40,
                                   "application/vnd.cncf.helm.config.v1+json");
    CHECK_THROWS_WITH_AS(parse_manifest(raw, ""), doctest::Contains("not an image"), Error);
    // An index where a manifest was expected.
    CHECK_THROWS_AS(parse_manifest(index_of(entry('a', "amd64")), ""), Error);
}

TEST_CASE("media types") {
    CHECK(is_layer_type("application/vnd.oci.image.layer.v1.tar"));
    CHECK(is_layer_type("application/vnd.oci.image.layer.v1.tar+zstd"));
    CHECK(is_layer_type("application/vnd.docker.image.rootfs.diff.tar.gzip"));
    CHECK_FALSE(is_layer_type("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"));
    CHECK_FALSE(is_layer_type("application/octet-stream"));
    const auto accept = manifest_accept();
    for (auto t :
         {media::oci_index, media::oci_manifest, media::docker_list, media::docker_manifest})
        CHECK(accept.find(t) != std::string::npos);
    CHECK(accept.find("v1+prettyjws") == std::string::npos);
}

TEST_CASE("index: platform selection") {
    const auto raw =
        index_of(entry('a', "amd64") + "," + entry('b', "arm64", "v8") + "," +
                 entry('c', "arm", "v7") + "," + entry('d', "arm", "v6") + "," +
                 entry('e', "amd64", "", "windows") + "," + entry('f', "unknown", "", "unknown"));
    CHECK(manifest_kind(raw, "") == ManifestKind::index);
    const auto idx = parse_index(raw);
    REQUIRE(idx.size() == 6);
    CHECK(select_platform(idx, "amd64").blob.digest == d('a'));
    CHECK(select_platform(idx, "arm64/v8").blob.digest == d('b'));
    CHECK(select_platform(idx, "arm64").blob.digest == d('b'));
    CHECK(select_platform(idx, "arm/v7").blob.digest == d('c'));
    CHECK(select_platform(idx, "arm").blob.digest == d('c'));
    CHECK(select_platform(idx, "arm/v6").blob.digest == d('d'));
    CHECK_THROWS_WITH_AS(
        select_platform(idx, "ppc64le"),
        doctest::Contains("linux/amd64, linux/arm64/v8, linux/arm/v7, linux/arm/v6"), Error);
    // An arm64 entry without a variant matches arm64/v8.
    const auto idx2 = parse_index(index_of(entry('9', "arm64")));
    CHECK(select_platform(idx2, "arm64/v8").blob.digest == d('9'));
    // A Docker list (media type from the header, none in the body).
    const std::string list = R"({"schemaVersion":2,"manifests":[)" + entry('a', "amd64") + "]}";
    CHECK(manifest_kind(list, "application/vnd.docker.distribution.manifest.list.v2+json") ==
          ManifestKind::index);
    CHECK_THROWS_AS(parse_index(R"({"manifests":"x"})"), Error);
    CHECK_THROWS_AS(select_platform({}, "amd64"), Error);
}

TEST_CASE("host architecture has a registry name") {
    const auto a = host_arch();
    CHECK_FALSE(a.empty());
#if defined(__x86_64__)
    CHECK(a == "amd64");
#elif defined(__aarch64__)
    CHECK(a == "arm64/v8");
#endif
}

TEST_CASE("compression by content") {
    const auto of = [](std::initializer_list<unsigned char> b) {
        std::vector<std::byte> v;
        for (auto c : b)
            v.push_back(std::byte{c});
        return detect_compression(std::span<const std::byte>(v));
    };
    CHECK(of({0x1f, 0x8b, 0x08, 0}) == Compression::gzip);
    CHECK(of({0x28, 0xb5, 0x2f, 0xfd, 0}) == Compression::zstd);
    CHECK(of({0xfd, '7', 'z', 'X', 'Z', 0x00}) == Compression::xz);
    CHECK(of({'B', 'Z', 'h', '9'}) == Compression::bzip2);
    CHECK(of({'u', 's', 't', 'a', 'r'}) == Compression::none);
    CHECK(of({0x1f}) == Compression::none);
    CHECK(of({}) == Compression::none);
    CHECK(compression_name(Compression::zstd) == "zstd");
}

// reference_test.cc: image references, including hostile ones.
#include <doctest/doctest.h>

#include "registry/reference.hh"
#include "util/error.hh"

using namespace ch;
using namespace ch::registry;

namespace {
const std::string hex64(64, 'a');
}

TEST_CASE("reference: Docker Hub defaults") {
    auto r = Reference::parse("alpine");
    CHECK(r.host == "registry-1.docker.io");
    CHECK(r.path == "library/alpine");
    CHECK(r.tag == "latest");
    CHECK(r.digest.empty());
    CHECK(r.str() == "registry-1.docker.io/library/alpine:latest");
    CHECK(r.familiar() == "alpine:latest");

    r = Reference::parse("user/img:1.0");
    CHECK(r.host == "registry-1.docker.io");
    CHECK(r.path == "user/img");
    CHECK(r.tag == "1.0");

    CHECK(Reference::parse("docker.io/alpine:3").path == "library/alpine");
    CHECK(Reference::parse("index.docker.io/alpine:3").host == "registry-1.docker.io");
    CHECK(Reference::parse("docker.io/library/alpine") == Reference::parse("alpine"));
}

TEST_CASE("reference: hosts and ports") {
    auto r = Reference::parse("127.0.0.1:5000/a/b/c:v1");
    CHECK(r.host == "127.0.0.1:5000");
    CHECK(r.path == "a/b/c");
    CHECK(r.tag == "v1");
    CHECK(r.version() == "v1");

    r = Reference::parse("localhost/img");
    CHECK(r.host == "localhost");
    CHECK(r.path == "img"); // no library/ outside Docker Hub
    CHECK(r.familiar() == "localhost/img:latest");

    r = Reference::parse("[::1]:5000/img:t");
    CHECK(r.host == "[::1]:5000");
    CHECK(r.path == "img");

    r = Reference::parse("Registry.Example.COM/x");
    CHECK(r.host == "Registry.Example.COM");

    // No dot, no port: a path component, not a host.
    r = Reference::parse("myorg/img");
    CHECK(r.host == "registry-1.docker.io");
    CHECK(r.path == "myorg/img");
}

TEST_CASE("reference: digests") {
    auto r = Reference::parse("alpine@sha256:" + hex64);
    CHECK(r.digest == "sha256:" + hex64);
    CHECK(r.tag.empty());
    CHECK(r.version() == r.digest);
    CHECK(r.str() == "registry-1.docker.io/library/alpine@sha256:" + hex64);

    r = Reference::parse("h.example:443/p:t@sha256:" + hex64);
    CHECK(r.tag == "t");
    CHECK(r.version() == "sha256:" + hex64);
    CHECK(r.str() == "h.example:443/p:t@sha256:" + hex64);

    CHECK(is_digest("sha256:" + hex64));
    CHECK_FALSE(is_digest("sha256:" + std::string(64, 'A')));
    CHECK_FALSE(is_digest("sha512:" + hex64));
    CHECK_FALSE(is_digest("sha256:" + hex64.substr(1)));
}

TEST_CASE("reference: storage's file-name form") {
    auto r = Reference::parse("127.0.0.1+5000%foo%bar+1");
    CHECK(r.host == "127.0.0.1:5000");
    CHECK(r.path == "foo/bar");
    CHECK(r.tag == "1");
}

TEST_CASE("reference: round trip") {
    for (const char* s : {"registry-1.docker.io/library/alpine:latest", "h:5000/a/b:c",
                          "x.y/z_z/w-w/q.q:T_1.2-3"}) {
        CAPTURE(s);
        CHECK(Reference::parse(s).str() == s);
        CHECK(Reference::parse(Reference::parse(s).str()) == Reference::parse(s));
    }
}

TEST_CASE("reference: hostile and malformed input is refused") {
    const std::string bad[] = {
        "",
        ":",
        "@",
        ":tag",
        "alpine:",
        "alpine@",
        "alpine@sha256:abc",
        "alpine@md5:" + hex64,
        "Alpine",        // upper case path
        "alpine/../etc", // dot-dot component
        "a//b",          // empty component
        "/alpine",       // absolute
        "alpine/",       // trailing slash
        "-alpine",       // leading separator
        "alp..ine",      // doubled separator
        "alp___ine",     // three underscores
        "alpine:-tag",   // tag must not start with '-'
        "alpine:" + std::string(129, 'a'),
        "h.example:99999/x", // port out of range
        "h.example:0/x",
        "h.example:/x",
        "h.example:5x/x",
        "h..example/x",
        "-h.example/x",
        "h_x.example/x",        // '_' in a host
        "a b",                  // space
        "a\nb",                 // newline
        std::string("a\0b", 3), // NUL
        "a\x1b[31mb",           // escape sequence
        "a?b",
        "a#b",
        "a;b",
        "a'b",
        "a\"b",
        "a\\b",
        "h.example/x?y=z",
        "h.example/" + std::string(300, 'a'),
        std::string(2000, 'a'),
        "[::1/x",
        "[zz]:5/x",
        "[::1]:5000", // host only
        "user:pass@h.example/x",
        "h.example/x:t:u",
        "x:t@sha256:" + hex64 + "@sha256:" + hex64,
    };
    for (const auto& s : bad) {
        CAPTURE(s);
        CHECK_THROWS_AS(Reference::parse(s), UsageError);
    }
}

TEST_CASE("reference: error messages name the input, printably") {
    try {
        Reference::parse("a\x1b[31mb");
        FAIL("no error");
    } catch (const UsageError& e) {
        const std::string m = e.what();
        CHECK(m.find("can't parse image reference") == 0);
        CHECK(m.find('\x1b') == std::string::npos);
    }
}

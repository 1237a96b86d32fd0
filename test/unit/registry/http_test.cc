// http_test.cc: origins and redirects, which decide where the registry's
// Authorization may go.
#include <doctest/doctest.h>

#include "registry/http.hh"

using namespace ch::registry::http;

TEST_CASE("origin") {
    CHECK(origin("https://Reg.Example/v2/x") == "https://reg.example:443");
    CHECK(origin("https://reg.example:443/v2/x") == "https://reg.example:443");
    CHECK(origin("http://reg.example/v2") == "http://reg.example:80");
    CHECK(origin("http://127.0.0.1:5000?x") == "http://127.0.0.1:5000");
    CHECK(origin("https://[::1]/x") == "https://[::1]:443");
    CHECK(origin("https://[::1]:8443/x") == "https://[::1]:8443");
    // Same host, other port or scheme: another origin.
    CHECK(origin("https://reg.example:8443/") != origin("https://reg.example/"));
    CHECK(origin("http://reg.example/") != origin("https://reg.example/"));
    // Userinfo tricks never match anything.
    CHECK(origin("https://reg.example@evil.example/x").empty());
    CHECK(origin("not a url").empty());
}

TEST_CASE("redirect locations") {
    const std::string base = "https://reg.example:5000/v2/a/b/blobs/sha256:00";
    CHECK(resolve_location(base, "https://cdn.example/x?sig=1") == "https://cdn.example/x?sig=1");
    CHECK(resolve_location(base, "/other/path") == "https://reg.example:5000/other/path");
    CHECK(resolve_location(base, "//cdn.example/y") == "https://cdn.example/y");
    CHECK(resolve_location(base, "sibling") == "https://reg.example:5000/v2/a/b/blobs/sibling");
    CHECK(resolve_location("https://h", "x") == "https://h/x");
    CHECK(resolve_location(base, "  /t \r") == "https://reg.example:5000/t");
    CHECK(origin(resolve_location(base, "/x")) == origin(base));
    CHECK(origin(resolve_location(base, "//cdn.example/y")) != origin(base));
}

TEST_CASE("failure classes") {
    CHECK(is_tls_error(CURLE_PEER_FAILED_VERIFICATION));
    CHECK(is_tls_error(CURLE_SSL_CONNECT_ERROR));
    CHECK_FALSE(is_tls_error(CURLE_COULDNT_CONNECT));
    CHECK(is_retryable(CURLE_COULDNT_CONNECT));
    CHECK(is_retryable(CURLE_OPERATION_TIMEDOUT));
    CHECK(is_retryable(CURLE_PARTIAL_FILE));
    CHECK_FALSE(is_retryable(CURLE_PEER_FAILED_VERIFICATION));
    CHECK_FALSE(is_retryable(CURLE_WRITE_ERROR));
}

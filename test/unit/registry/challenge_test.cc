// challenge_test.cc: WWW-Authenticate, Retry-After, OCI error bodies and the
// masking of secrets in traces.
#include <doctest/doctest.h>

#include "registry/challenge.hh"

using namespace ch::registry;

TEST_CASE("challenge: Docker Hub's bearer challenge") {
    const auto c = parse_challenges(
        R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull")");
    REQUIRE(c.size() == 1);
    CHECK(c[0].scheme == "bearer");
    CHECK(c[0].params.at("realm") == "https://auth.docker.io/token");
    CHECK(c[0].params.at("service") == "registry.docker.io");
    CHECK(c[0].params.at("scope") == "repository:library/alpine:pull");
}

TEST_CASE("challenge: basic, case, spaces, several challenges") {
    auto c = parse_challenges(R"(Basic realm="Registry Realm")");
    REQUIRE(c.size() == 1);
    CHECK(c[0].scheme == "basic");
    CHECK(c[0].params.at("realm") == "Registry Realm");

    c = parse_challenges(
        R"(BEARER Realm = "https://t/x" , Service=svc, Basic realm="r", Negotiate)");
    REQUIRE(c.size() == 3);
    CHECK(c[0].scheme == "bearer");
    CHECK(c[0].params.at("realm") == "https://t/x");
    CHECK(c[0].params.at("service") == "svc");
    CHECK(c[1].scheme == "basic");
    CHECK(c[1].params.at("realm") == "r");
    CHECK(c[2].scheme == "negotiate");
    CHECK(c[2].params.empty());

    // Scopes with commas and escaped quotes stay whole.
    c = parse_challenges(
        R"(Bearer realm="https://t",scope="repository:a/b:pull,push",x="q\"uote")");
    REQUIRE(c.size() == 1);
    CHECK(c[0].params.at("scope") == "repository:a/b:pull,push");
    CHECK(c[0].params.at("x") == "q\"uote");

    // token68
    c = parse_challenges("Basic YWxhZGRpbjpvcGVuc2VzYW1l==, Bearer realm=\"r\"");
    REQUIRE(c.size() == 2);
    CHECK(c[1].params.at("realm") == "r");
}

TEST_CASE("challenge: hostile headers don't crash or loop") {
    for (const char* h :
         {"", ",,,", "=", "Bearer", "Bearer realm", "Bearer realm=", "Bearer realm=\"unterminated",
          "Bearer realm=\"a\\", "\"\"\"", "Bearer ,,, realm=\"x\"", "@@@ Bearer realm=x",
          "\x01\x02\x7f", "Bearer realm=\"x\" garbage=", "Bearer realm=\"x\" realm=\"y\""}) {
        CAPTURE(h);
        const auto c = parse_challenges(h);
        CHECK(c.size() < 10);
    }
    CHECK(parse_challenges("Bearer realm=\"x\"")[0].params.at("realm") == "x");
}

TEST_CASE("Retry-After") {
    const std::time_t now = 784111777; // Sun, 06 Nov 1994 08:49:37 GMT
    CHECK(parse_retry_after("120", now) == std::chrono::seconds(120));
    CHECK(parse_retry_after(" 0 ", now) == std::chrono::seconds(0));
    CHECK(parse_retry_after("99999999999999999999", now) == std::chrono::seconds(3600));
    CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now) == std::chrono::seconds(10));
    CHECK(parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now) == std::chrono::seconds(60));
    CHECK(parse_retry_after("Sun Nov  6 08:49:57 1994", now) == std::chrono::seconds(20));
    CHECK(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now) ==
          std::chrono::seconds(0)); // past
    CHECK(parse_retry_after("Sun, 06 Nov 2094 08:00:00 GMT", now) ==
          std::chrono::seconds(3600)); // capped
    CHECK_FALSE(parse_retry_after("", now));
    CHECK_FALSE(parse_retry_after("-5", now));
    CHECK_FALSE(parse_retry_after("1.5", now));
    CHECK_FALSE(parse_retry_after("soon", now));
    CHECK_FALSE(parse_retry_after(std::string(200, '9') + "x", now));
}

TEST_CASE("OCI error bodies") {
    std::string code;
    CHECK(
        oci_error_message(
            R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]})",
            &code) == "MANIFEST_UNKNOWN: manifest unknown");
    CHECK(code == "MANIFEST_UNKNOWN");
    CHECK(oci_error_message(
              R"({"errors":[{"code":"A"},{"message":"b"},{"code":"C","message":"d"}]})") ==
          "A; b; C: d");
    CHECK(oci_error_message("not json").empty());
    CHECK(oci_error_message("[]").empty());
    CHECK(oci_error_message(R"({"errors":"x"})").empty());
    CHECK(oci_error_message(R"({"errors":[1,2,{"code":3}]})").empty());
    const auto esc = oci_error_message(R"({"errors":[{"code":"X","message":"\u001b[31mred"}]})");
    CHECK(esc.find('\x1b') == std::string::npos);
    const auto long_msg = oci_error_message(R"({"errors":[{"code":"X","message":")" +
                                            std::string(5000, 'm') + "\"}]}");
    CHECK(long_msg.size() < 500);
}

TEST_CASE("secrets are masked in traces") {
    CHECK(mask_header("Authorization: Bearer eyJhbGciOi.secret.token") ==
          "Authorization: Bearer ***");
    CHECK(mask_header("authorization: Basic dXNlcjpwYXNz\r\n") == "authorization: Basic ***");
    CHECK(mask_header("Proxy-Authorization: Basic abc") == "Proxy-Authorization: Basic ***");
    CHECK(mask_header("Authorization: sekrit") == "Authorization: ***");
    CHECK(mask_header("Set-Cookie: session=abc") == "Set-Cookie: ***");
    CHECK(mask_header("Content-Length: 12") == "Content-Length: 12");
    // libcurl's HTTP/2 trace shows request headers as text.
    CHECK(mask_header("h2h3 [authorization: Basic dXNlcjpwYXNz]") ==
          "h2h3 [authorization: Basic ***]");
    CHECK(mask_header("h2h3 [cookie: a=b]") == "h2h3 [cookie: ***]");
    CHECK(mask_header("X: \x1b[2J").find('\x1b') == std::string::npos);
}

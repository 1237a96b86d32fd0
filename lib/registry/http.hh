// http.hh: internal to lib/registry. One HTTP exchange as data, libcurl
// handles set up the one way we allow (http and https only, no redirects
// followed by libcurl, proxies from the environment, secrets masked in
// traces), and the sorting of failures into what users can act on.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <curl/curl.h>

#include "registry/client.hh"

namespace ch::registry::http {

struct Exchange {
    // request
    std::string method = "GET"; // GET or HEAD
    std::string url;
    std::vector<std::string> headers; // "Name: value"
    std::string authorization;        // header value, or empty
    std::uint64_t range_from = 0;     // > 0: "Range: bytes=N-"
    std::size_t max_body = 64 << 10;  // bodies kept in memory; more is an error
    // Blob bodies of a 2xx answer go here instead of body; false aborts.
    std::function<bool(std::span<const std::byte>)> sink;

    // response
    CURLcode result = CURLE_OK;
    long status = 0;
    std::map<std::string, std::string> response_headers; // names lower case; repeats joined ", "
    std::string body;
    bool body_too_big = false;
    std::exception_ptr sink_error;
    char errbuf[CURL_ERROR_SIZE] = {};

    std::string header(const std::string& lower_name) const;
    std::string curl_message() const; // errbuf, else curl_easy_strerror
};

// Set up handle for ex (after curl_easy_reset or on a new handle).
void setup(CURL* handle, Exchange& ex, const Options& opts);

// Origin ("scheme://host:port") of a URL, lower case; empty if unparseable.
std::string origin(std::string_view url);
// location resolved against base (absolute, or rooted at base's origin).
std::string resolve_location(std::string_view base, std::string_view location);

bool is_tls_error(CURLcode);
bool is_retryable(CURLcode);

} // namespace ch::registry::http

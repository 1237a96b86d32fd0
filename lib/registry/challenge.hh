// challenge.hh: the pieces of HTTP a registry client must parse itself:
// WWW-Authenticate challenges, Retry-After, and the OCI error body.
// Pure functions, so that hostile input is easy to test.
#pragma once

#include <chrono>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ch::registry {

struct Challenge {
    std::string scheme;                        // lower case: "bearer", "basic"
    std::map<std::string, std::string> params; // keys lower case: realm, service, scope
};

// All challenges in one or more WWW-Authenticate values (RFC 7235: several
// challenges may share a header, separated by commas). Malformed parts are
// skipped, never thrown.
std::vector<Challenge> parse_challenges(std::string_view header);

// Retry-After: delta-seconds or an HTTP-date (relative to now). nullopt if
// unreadable; a date in the past is zero. Capped at one hour.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, std::time_t now);

// "CODE: message" from an OCI error body ({"errors":[{"code","message"}]}),
// joined with "; ", made printable and cut to a few hundred bytes. Empty if
// the body isn't one. first_code gets the first code if non-null.
std::string oci_error_message(std::string_view body, std::string* first_code = nullptr);

// Header value with control characters escaped and Authorization-like
// values masked, for -vv/-vvv traces: "Authorization: Bearer ***".
std::string mask_header(std::string_view line);

} // namespace ch::registry

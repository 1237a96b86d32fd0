// reference.cc: parsing image references. The checks follow the OCI
// distribution spec's grammar, which is stricter than what Charliecloud
// accepts: whatever passes here is safe to put in a URL and a file name.
#include "registry/reference.hh"

#include <algorithm>

#include "util/error.hh"
#include "util/strings.hh"

namespace ch::registry {

namespace {

constexpr std::size_t max_reference = 1024;
constexpr std::size_t max_path = 255; // the distribution spec's limit on names
constexpr std::size_t max_tag = 128;

bool lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool alnum(char c) {
    return lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

[[noreturn]] void bad(std::string_view text, std::string_view why) {
    throw UsageError(cat("can't parse image reference '", printable(text), "': ", why));
}

// [a-z0-9]+ separated by '.', '_', '__' or one or more '-'.
bool is_component(std::string_view c) {
    if (c.empty() || !lower_alnum(c.front()) || !lower_alnum(c.back()))
        return false;
    for (std::size_t i = 0; i < c.size(); ++i) {
        const char ch = c[i];
        if (lower_alnum(ch) || ch == '-')
            continue;
        if (ch == '.' || ch == '_') {
            // Separators can't touch: "a..b", "a._b"; "__" is allowed.
            const char next = c[i + 1]; // in range: the last char is alnum
            if (ch == '_' && next == '_') {
                ++i;
                if (!lower_alnum(c[i + 1]))
                    return false;
                continue;
            }
            if (!lower_alnum(next))
                return false;
            continue;
        }
        return false;
    }
    return true;
}

bool is_port(std::string_view p) {
    if (p.empty() || p.size() > 5 || p.front() == '0')
        return false;
    unsigned v = 0;
    for (char c : p) {
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    return v >= 1 && v <= 65535;
}

// DNS name or IPv4 ("a-b.c"), or a bracketed IPv6 address, then :PORT.
bool is_host(std::string_view h) {
    std::string_view name = h;
    if (!h.empty() && h.front() == '[') {
        const auto close = h.find(']');
        if (close == std::string_view::npos || close < 3)
            return false;
        const auto inside = h.substr(1, close - 1);
        if (!std::all_of(inside.begin(), inside.end(), [](char c) {
                return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                       c == ':' || c == '.';
            }))
            return false;
        const auto rest = h.substr(close + 1);
        return rest.empty() || (rest.front() == ':' && is_port(rest.substr(1)));
    }
    if (const auto colon = h.find(':'); colon != std::string_view::npos) {
        if (!is_port(h.substr(colon + 1)))
            return false;
        name = h.substr(0, colon);
    }
    if (name.empty() || name.size() > 253)
        return false;
    std::size_t start = 0;
    while (start <= name.size()) {
        auto dot = name.find('.', start);
        if (dot == std::string_view::npos)
            dot = name.size();
        const auto label = name.substr(start, dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        for (char c : label)
            if (!alnum(c) && c != '-')
                return false;
        start = dot + 1;
    }
    return true;
}

bool is_tag(std::string_view t) {
    if (t.empty() || t.size() > max_tag || !(alnum(t.front()) || t.front() == '_'))
        return false;
    return std::all_of(t.begin(), t.end(),
                       [](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}

bool looks_like_host(std::string_view first) {
    return first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
           first.starts_with('[') || first == "localhost";
}

} // namespace

bool is_digest(std::string_view s) {
    constexpr std::string_view algo = "sha256:";
    if (s.size() != algo.size() + 64 || !s.starts_with(algo))
        return false;
    return std::all_of(s.begin() + algo.size(), s.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Reference Reference::parse(std::string_view text) {
    if (text.empty())
        bad(text, "empty");
    if (text.size() > max_reference)
        bad(text.substr(0, 64), cat("longer than ", max_reference, " bytes"));
    std::string s(text);
    std::replace(s.begin(), s.end(), '%', '/');
    std::replace(s.begin(), s.end(), '+', ':');
    for (char c : s)
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
            bad(text, "contains a space or control character");

    Reference r;
    std::string_view rest = s;
    if (const auto at = rest.find('@'); at != std::string_view::npos) {
        r.digest = std::string(rest.substr(at + 1));
        rest = rest.substr(0, at);
        if (!is_digest(r.digest))
            bad(text, "digest must be sha256: and 64 lower-case hex digits");
    }
    // The host may carry a port, so the tag's ':' is the one after the last '/'.
    const auto slash = rest.find('/');
    if (slash != std::string_view::npos && looks_like_host(rest.substr(0, slash))) {
        r.host = std::string(rest.substr(0, slash));
        rest = rest.substr(slash + 1);
        if (!is_host(r.host))
            bad(text, cat("bad registry host '", printable(r.host), "'"));
    } else if (slash == std::string_view::npos && rest.starts_with('[')) {
        bad(text, "no image path after the host");
    }
    const auto last_slash = rest.rfind('/');
    const auto colon = rest.find(':', last_slash == std::string_view::npos ? 0 : last_slash);
    if (colon != std::string_view::npos) {
        r.tag = std::string(rest.substr(colon + 1));
        rest = rest.substr(0, colon);
        if (!is_tag(r.tag))
            bad(text, cat("bad tag '", printable(r.tag),
                          "' (letters, digits, '_', '.', '-'; at most ", max_tag, ")"));
    }
    if (rest.empty())
        bad(text, "no image path");
    if (rest.size() > max_path)
        bad(text, cat("image path longer than ", max_path, " bytes"));
    std::size_t start = 0;
    while (start <= rest.size()) {
        auto end = rest.find('/', start);
        if (end == std::string_view::npos)
            end = rest.size();
        const auto comp = rest.substr(start, end - start);
        if (!is_component(comp))
            bad(text, cat("bad path component '", printable(comp),
                          "' (lower-case letters and digits, separated by '.', '_', '__' or '-')"));
        start = end + 1;
    }
    r.path = std::string(rest);

    if (r.host.empty() || r.host == "docker.io" || r.host == "index.docker.io")
        r.host = std::string(docker_hub);
    if (r.host == docker_hub && r.path.find('/') == std::string::npos)
        r.path = "library/" + r.path;
    if (r.tag.empty() && r.digest.empty())
        r.tag = "latest";
    return r;
}

std::string Reference::str() const {
    std::string s = cat(host, "/", path);
    if (!tag.empty())
        s += cat(":", tag);
    if (!digest.empty())
        s += cat("@", digest);
    return s;
}

std::string Reference::familiar() const {
    std::string s;
    if (host == docker_hub)
        s = path.starts_with("library/") ? path.substr(8) : path;
    else
        s = cat(host, "/", path);
    if (!tag.empty())
        s += cat(":", tag);
    if (!digest.empty())
        s += cat("@", digest);
    return s;
}

} // namespace ch::registry

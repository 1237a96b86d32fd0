// http.cc: libcurl set-up shared by the single requests and the parallel
// blob transfers.
#include "registry/http.hh"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "registry/challenge.hh"
#include "util/log.hh"
#include "util/strings.hh"

namespace ch::registry::http {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
    auto& ex = *static_cast<Exchange*>(user);
    const std::string_view line(data, size * n);
    if (line.starts_with("HTTP/")) { // a new response (after a 100, say)
        ex.response_headers.clear();
        return size * n;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos)
        return size * n;
    auto name = lower(trim(line.substr(0, colon)));
    const auto value = trim(line.substr(colon + 1));
    auto& slot = ex.response_headers[name];
    if (slot.size() + value.size() > 16384) // a hostile server's endless header
        return size * n;
    slot += slot.empty() ? std::string(value) : cat(", ", value);
    return size * n;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto& ex = *static_cast<Exchange*>(user);
    const std::size_t len = size * n;
    if (ex.sink && ex.status >= 200 && ex.status < 300) {
        try {
            if (!ex.sink(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), len)))
                return 0;
        } catch (...) {
            ex.sink_error = std::current_exception();
            return 0;
        }
        return len;
    }
    if (ex.body.size() + len > ex.max_body) {
        ex.body_too_big = true;
        return 0;
    }
    ex.body.append(data, len);
    return len;
}

int on_debug(CURL*, curl_infotype type, char* data, std::size_t size, void*) {
    const std::string_view text(data, size);
    const char* dir = type == CURLINFO_HEADER_OUT ? "> " : type == CURLINFO_HEADER_IN ? "< " : "* ";
    if (type != CURLINFO_HEADER_OUT && type != CURLINFO_HEADER_IN && type != CURLINFO_TEXT)
        return 0;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos)
            end = text.size();
        const auto line = trim(text.substr(start, end - start));
        if (!line.empty())
            log::trace(dir, mask_header(line));
        start = end + 1;
    }
    return 0;
}

} // namespace

std::string Exchange::header(const std::string& lower_name) const {
    const auto it = response_headers.find(lower_name);
    return it == response_headers.end() ? std::string() : it->second;
}

std::string Exchange::curl_message() const {
    return printable(errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(result)));
}

// The status is needed by on_body before the transfer ends: read it when the
// headers are complete, through CURLOPT_HEADERFUNCTION's final empty line.
namespace {
std::size_t on_header_status(char* data, std::size_t size, std::size_t n, void* user) {
    auto& ex = *static_cast<Exchange*>(user);
    const std::string_view line(data, size * n);
    if (line.starts_with("HTTP/")) {
        // "HTTP/1.1 206 Partial Content", "HTTP/2 200"
        const auto sp = line.find(' ');
        long code = 0;
        if (sp != std::string_view::npos)
            for (std::size_t i = sp + 1; i < line.size() && i < sp + 4; ++i)
                if (line[i] >= '0' && line[i] <= '9')
                    code = code * 10 + (line[i] - '0');
        ex.status = code;
    }
    return on_header(data, size, n, user);
}
} // namespace

void setup(CURL* h, Exchange& ex, const Options& opts) {
    curl_easy_setopt(h, CURLOPT_URL, ex.url.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); // redirects are ours: see client.cc
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "chtools-ch-image");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ex.errbuf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header_status);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &ex);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &ex);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, static_cast<long>(opts.connect_timeout));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(opts.low_speed_time));
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
    // Proxies: libcurl reads http_proxy, https_proxy, no_proxy itself; we set
    // nothing that would turn that off.
    if (!opts.tls_verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (!opts.ca_file.empty()) {
        // CAINFO replaces the bundle; the system's directory stays trusted.
        curl_easy_setopt(h, CURLOPT_CAINFO, opts.ca_file.c_str());
        std::error_code ec;
        if (std::filesystem::is_directory("/etc/ssl/certs", ec))
            curl_easy_setopt(h, CURLOPT_CAPATH, "/etc/ssl/certs");
    }
    if (ex.method == "HEAD")
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    if (ex.range_from > 0) {
        const auto r = cat(ex.range_from, "-");
        curl_easy_setopt(h, CURLOPT_RANGE, r.c_str()); // copied by libcurl
    }
    if (log::enabled(log::Level::trace)) {
        curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, on_debug);
        curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
    }
}

std::string origin(std::string_view url) {
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos)
        return {};
    const auto scheme = lower(url.substr(0, scheme_end));
    auto rest = url.substr(scheme_end + 3);
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (rest.find('@') != std::string_view::npos)
        return {}; // userinfo: never ours
    auto host = lower(rest);
    const bool bracket = !host.empty() && host.front() == '[';
    const auto colon = host.rfind(':');
    if (colon == std::string::npos || (bracket && host.back() == ']'))
        host += scheme == "https" ? ":443" : scheme == "http" ? ":80" : "";
    return cat(scheme, "://", host);
}

std::string resolve_location(std::string_view base, std::string_view location) {
    location = trim(location);
    if (location.find("://") != std::string_view::npos)
        return std::string(location);
    const auto scheme_end = base.find("://");
    if (scheme_end == std::string_view::npos)
        return std::string(location);
    if (location.starts_with("//"))
        return cat(base.substr(0, scheme_end + 1), location);
    const auto host_end = base.find('/', scheme_end + 3);
    const auto root = base.substr(0, host_end);
    if (location.starts_with('/'))
        return cat(root, location);
    // Relative to the base's directory.
    const auto q = base.find_first_of("?#");
    const auto path = base.substr(0, q);
    const auto last = path.rfind('/');
    return cat(path.substr(0, last == std::string_view::npos || last < scheme_end + 3 ? path.size()
                                                                                      : last + 1),
               last < scheme_end + 3 ? "/" : "", location);
}

bool is_tls_error(CURLcode c) {
    switch (c) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        return true;
    default:
        return false;
    }
}

bool is_retryable(CURLcode c) {
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
        return true;
    default:
        return false;
    }
}

} // namespace ch::registry::http

// client.cc: the OCI Distribution client. Small requests (manifests, configs,
// tokens) go one at a time through one reused easy handle; blobs go through a
// curl multi handle, several at once, each with its own retry clock. Both
// share the rules for auth, redirects and failures:
//
// - A 401 starts the WWW-Authenticate flow once per request: a Bearer token
//   (anonymous, or with the user's credentials) is fetched for the scope and
//   reused for later requests with that scope; Basic sends the credentials.
// - Redirects are followed here, not by libcurl, so that the registry's
//   Authorization never goes to another origin (blob storage, a CDN).
// - Timeouts, dropped connections, 5xx and 429 are retried with exponential
//   backoff, or after Retry-After when the registry sends one.
#include "registry/client.hh"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "registry/challenge.hh"
#include "registry/http.hh"
#include "storage/blob_cache.hh"
#include "util/log.hh"
#include "util/strings.hh"

namespace ch::registry {

using Clock = std::chrono::steady_clock;

std::string_view kind_name(ErrorKind k) {
    switch (k) {
    case ErrorKind::manifest_unknown:
        return "unknown tag or digest";
    case ErrorKind::name_unknown:
        return "unknown repository";
    case ErrorKind::unauthorized:
        return "unauthorized";
    case ErrorKind::rate_limited:
        return "rate-limited";
    case ErrorKind::unreachable:
        return "registry unreachable";
    case ErrorKind::tls:
        return "TLS failure";
    case ErrorKind::digest_mismatch:
        return "digest mismatch";
    case ErrorKind::disk_full:
        return "disk full";
    case ErrorKind::protocol:
        return "registry error";
    }
    return "registry error";
}

namespace {

[[noreturn]] void raise(ErrorKind k, std::string_view detail) {
    throw RegistryError(k, cat(kind_name(k), ": ", detail));
}

std::string base64(std::string_view in) {
    static constexpr char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                           (static_cast<unsigned char>(in[i + 1]) << 8) |
                           static_cast<unsigned char>(in[i + 2]);
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += t[v & 63];
    }
    if (i + 1 == in.size()) {
        const unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                           (static_cast<unsigned char>(in[i + 1]) << 8);
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

std::string canonical_host(std::string_view h) {
    if (h == "docker.io" || h == "index.docker.io")
        return std::string(docker_hub);
    return std::string(h);
}

std::string url_escape(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            out += static_cast<char>(c);
        else {
            static constexpr char hex[] = "0123456789ABCDEF";
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

// Backoff before retry number n (1-based): 0.5, 1, 2, 4, 8, 16, 30, 30 ... s.
std::chrono::milliseconds backoff(int n) {
    const double s = std::min(30.0, std::pow(2.0, n - 2));
    return std::chrono::milliseconds(static_cast<long long>(s * 1000));
}

// Longest Retry-After we wait for; longer is reported at once.
constexpr std::chrono::seconds max_retry_after{300};

std::string registry_says(const http::Exchange& ex, std::string* code = nullptr) {
    const auto msg = oci_error_message(ex.body, code);
    return msg.empty() ? std::string() : cat(" (registry says: ", msg, ")");
}

std::string status_text(const http::Exchange& ex) {
    return cat("HTTP ", ex.status);
}

} // namespace

// One place a repository is fetched from: the registry or a mirror of it.
struct Source {
    std::string host; // HOST[:PORT] as contacted
    std::string scheme;
    bool mirror = false;

    std::string base(const Reference& ref) const {
        return cat(scheme, "://", host, "/v2/", ref.path);
    }
};

struct Client::Impl {
    Options opts;
    CURL* easy = nullptr;
    CURLM* multi = nullptr;
    std::map<std::string, std::string> auth;  // "HOST SCOPE" -> Authorization value
    std::map<std::string, std::string> basic; // HOST -> Basic value, once the registry asked for it
    std::set<std::string> warned;
    std::map<std::string, int> counts;
    std::map<std::string, std::string>
        source_of; // registry host -> host that answered (mirror or itself)

    bool is_insecure(std::string_view host) const {
        for (const auto& i : opts.insecure) {
            if (i == host)
                return true;
            // An entry without a port covers every port of that host.
            if (i.find(':') == std::string::npos && host.starts_with(i) && host.size() > i.size() &&
                host[i.size()] == ':')
                return true;
        }
        return false;
    }

    Source source_for(const std::string& host, bool mirror) {
        Source s{host, is_insecure(host) ? "http" : "https", mirror};
        if (s.scheme == "http" && warned.insert(host).second)
            log::warning("using plain HTTP for insecure registry ", host,
                         ": anyone on the network can read and change what is pulled");
        return s;
    }

    std::vector<Source> sources(const Reference& ref) {
        std::vector<Source> out;
        for (const auto& [from, to] : opts.mirrors)
            if (canonical_host(from) == ref.host && !to.empty())
                out.push_back(source_for(to, true));
        out.push_back(source_for(ref.host, false));
        return out;
    }

    std::optional<Credentials> credentials_for(const std::string& host) const {
        for (const auto& [h, c] : opts.host_credentials)
            if (canonical_host(h) == host)
                return c;
        return opts.credentials;
    }

    static std::string scope_of(const Reference& ref) {
        return cat("repository:", ref.path, ":pull");
    }

    std::string authorization(const Source& src, const std::string& scope) const {
        if (auto it = auth.find(cat(src.host, " ", scope)); it != auth.end())
            return it->second;
        if (auto it = basic.find(src.host); it != basic.end())
            return it->second;
        return {};
    }

    void count(const std::string& method) { ++counts[method]; }

    // One exchange on the reused easy handle.
    void perform(http::Exchange& ex) {
        curl_easy_reset(easy);
        http::setup(easy, ex, opts);
        curl_slist* hdrs = nullptr;
        for (const auto& h : ex.headers)
            hdrs = curl_slist_append(hdrs, h.c_str());
        const std::string a = cat("Authorization: ", ex.authorization);
        if (!ex.authorization.empty())
            hdrs = curl_slist_append(hdrs, a.c_str());
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
        count(ex.method);
        log::debug(ex.method, " ", printable(ex.url));
        ex.result = curl_easy_perform(easy);
        curl_slist_free_all(hdrs);
        long code = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
        ex.status = code;
        log::debug(ex.method, " ", printable(ex.url), ": ",
                   ex.result == CURLE_OK ? status_text(ex) : ex.curl_message());
    }

    // Answer a 401 from src: get what its challenge asks for. False if
    // there's nothing more to try.
    bool authenticate(const Source& src, const std::string& scope, const http::Exchange& answer) {
        const auto challenges = parse_challenges(answer.header("www-authenticate"));
        const auto creds = credentials_for(src.host);
        for (const auto& c : challenges) {
            if (c.scheme == "bearer") {
                const auto realm = c.params.find("realm");
                if (realm == c.params.end())
                    continue;
                get_token(src, scope, realm->second, c, creds);
                return true;
            }
        }
        for (const auto& c : challenges) {
            if (c.scheme == "basic") {
                if (!creds)
                    raise(
                        ErrorKind::unauthorized,
                        cat(src.host,
                            " asks for a username and password; set CH_IMAGE_USERNAME and "
                            "CH_IMAGE_PASSWORD, use --auth, or registry.auth in the configuration",
                            registry_says(answer)));
                if (basic.count(src.host))
                    return false; // already sent, and refused
                if (src.scheme == "http")
                    log::warning("sending credentials for ", src.host, " over plain HTTP");
                basic[src.host] = "Basic " + base64(cat(creds->username, ":", creds->password));
                return true;
            }
        }
        return false;
    }

    void get_token(const Source& src, const std::string& scope, const std::string& realm,
                   const Challenge& c, const std::optional<Credentials>& creds) {
        const auto realm_origin = http::origin(realm);
        if (realm_origin.empty())
            raise(ErrorKind::protocol, cat(src.host, " sent a token realm that is not a URL: '",
                                           printable(realm.substr(0, 200)), "'"));
        if (realm_origin.starts_with("http://") && src.scheme != "http" && creds)
            raise(ErrorKind::unauthorized,
                  cat(src.host, "'s token service ", printable(realm),
                      " is plain HTTP; refusing to send credentials to it"));
        std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
        bool first = true;
        const auto add = [&](std::string_view k, std::string_view v) {
            url += cat(first ? "" : "&", k, "=", url_escape(v));
            first = false;
        };
        if (auto s = c.params.find("service"); s != c.params.end())
            add("service", s->second);
        const auto sc = c.params.find("scope");
        add("scope", sc != c.params.end() ? sc->second : scope);
        if (creds)
            add("account", creds->username);
        http::Exchange ex;
        ex.url = url;
        if (creds)
            ex.authorization = "Basic " + base64(cat(creds->username, ":", creds->password));
        ex.max_body = 1 << 20;
        log::verbose("getting ", creds ? "a " : "an anonymous ", "token for ", printable(scope),
                     " from ", printable(realm));
        for (int attempt = 0;; ++attempt) {
            perform(ex);
            if (ex.result == CURLE_OK && ex.status / 100 != 5 && ex.status != 429)
                break;
            if (attempt >= opts.retries ||
                (ex.result != CURLE_OK && !http::is_retryable(ex.result)))
                break;
            std::this_thread::sleep_for(backoff(attempt + 1));
            ex.body.clear();
        }
        if (ex.result != CURLE_OK)
            transport_failure(ex, cat("token service ", printable(realm)));
        if (ex.status == 401 || ex.status == 403)
            raise(ErrorKind::unauthorized,
                  cat("token service ", printable(realm), " refused ",
                      creds ? cat("the credentials for ", printable(creds->username))
                            : std::string("an anonymous token"),
                      " (", status_text(ex), ")", registry_says(ex)));
        if (ex.status != 200)
            raise(ErrorKind::protocol, cat("token service ", printable(realm), " answered ",
                                           status_text(ex), registry_says(ex)));
        const auto j = nlohmann::json::parse(ex.body, nullptr, false);
        std::string token;
        if (j.is_object()) {
            for (const char* k : {"token", "access_token"})
                if (auto it = j.find(k);
                    it != j.end() && it->is_string() && !it->get<std::string>().empty()) {
                    token = it->get<std::string>();
                    break;
                }
        }
        if (token.empty() || token.size() > 64 * 1024 ||
            std::any_of(token.begin(), token.end(),
                        [](char ch) { return ch <= ' ' || ch == 0x7f; }))
            raise(ErrorKind::protocol,
                  cat("token service ", printable(realm), " sent no usable token"));
        auth[cat(src.host, " ", scope)] = "Bearer " + token;
    }

    [[noreturn]] void transport_failure(const http::Exchange& ex, std::string_view what) {
        if (http::is_tls_error(ex.result))
            raise(ErrorKind::tls,
                  cat(what, ": ", ex.curl_message(),
                      " (a site CA can go in registry.ca-file; --tls-no-verify skips the check)"));
        if (ex.body_too_big)
            raise(ErrorKind::protocol, cat(what, ": answer longer than ", ex.max_body, " bytes"));
        raise(ErrorKind::unreachable, cat(what, ": ", ex.curl_message()));
    }

    // A request to src with auth, redirects and retries; returns the final
    // answer, whatever its status (the caller knows what a 404 means).
    http::Exchange request(const Source& src, const Reference& ref, const std::string& path_tail,
                           const std::string& method, std::vector<std::string> headers,
                           std::size_t max_body) {
        const std::string scope = scope_of(ref);
        std::string url = cat(src.base(ref), path_tail);
        const std::string home = http::origin(url);
        int retries = 0, redirects = 0, auths = 0;
        while (true) {
            http::Exchange ex;
            ex.method = method;
            ex.url = url;
            ex.headers = headers;
            ex.max_body = max_body;
            if (http::origin(url) == home)
                ex.authorization = authorization(src, scope);
            perform(ex);
            std::optional<std::chrono::milliseconds> wait;
            std::string why;
            if (ex.result != CURLE_OK) {
                if (!http::is_retryable(ex.result))
                    transport_failure(ex, src.host);
                why = ex.curl_message();
                wait = backoff(retries + 1);
            } else if (ex.status == 401 && http::origin(url) == home && auths < 2) {
                ++auths;
                if (authenticate(src, scope, ex))
                    continue;
                return ex;
            } else if (ex.status >= 300 && ex.status < 400 && ex.status != 304 &&
                       !ex.header("location").empty()) {
                if (++redirects > 10)
                    raise(ErrorKind::protocol, cat(src.host, ": more than 10 redirects"));
                url = http::resolve_location(url, ex.header("location"));
                if (!url.starts_with("https://") && !url.starts_with("http://"))
                    raise(ErrorKind::protocol,
                          cat(src.host, ": redirect to a URL that is not HTTP(S)"));
                continue;
            } else if (ex.status == 429 || ex.status / 100 == 5) {
                why = status_text(ex);
                wait = backoff(retries + 1);
                if (auto ra = parse_retry_after(ex.header("retry-after"), std::time(nullptr))) {
                    if (*ra > max_retry_after)
                        return ex;
                    wait = *ra;
                }
            } else {
                return ex;
            }
            // A mirror gets one retry: the registry itself is the fallback.
            if (retries >= (src.mirror ? std::min(1, opts.retries) : opts.retries)) {
                if (ex.result != CURLE_OK)
                    transport_failure(ex, cat(src.host, " (after ", retries + 1, " tries)"));
                return ex;
            }
            ++retries;
            log::verbose(printable(src.host), ": ", why, "; retrying in ", wait->count(), " ms");
            std::this_thread::sleep_for(*wait);
        }
    }

    [[noreturn]] void http_failure(const http::Exchange& ex, const Source& src,
                                   const Reference& ref, std::string_view what) {
        std::string code;
        const auto says = registry_says(ex, &code);
        const auto where = cat(what, " from ", src.host);
        if (ex.status == 404 || code == "MANIFEST_UNKNOWN" || code == "NAME_UNKNOWN") {
            if (code == "NAME_UNKNOWN")
                raise(ErrorKind::name_unknown, cat(printable(ref.path), " at ", src.host, says));
            if (code == "MANIFEST_UNKNOWN" || code.empty())
                raise(ErrorKind::manifest_unknown,
                      cat(printable(ref.familiar()), " (", status_text(ex), " from ", src.host, ")",
                          says));
            raise(ErrorKind::protocol, cat(where, ": ", status_text(ex), says));
        }
        if (ex.status == 401 || ex.status == 403) {
            const bool anonymous = !credentials_for(src.host);
            raise(ErrorKind::unauthorized,
                  cat(where, ": ", status_text(ex), says,
                      anonymous ? "; the repository may not exist, or needs credentials "
                                  "(CH_IMAGE_USERNAME and "
                                  "CH_IMAGE_PASSWORD, --auth, or registry.auth)"
                                : ""));
        }
        if (ex.status == 429) {
            const auto ra = ex.header("retry-after");
            raise(ErrorKind::rate_limited,
                  cat(src.host, " refuses more requests for now (HTTP 429",
                      ra.empty() ? "" : ", Retry-After: ", printable(ra.substr(0, 40)), ")", says,
                      credentials_for(src.host) ? ""
                                                : "; authenticated users often get higher limits"));
        }
        raise(ErrorKind::protocol, cat(where, ": ", status_text(ex), says));
    }

    // A manifest's 404: registries often say MANIFEST_UNKNOWN for a missing
    // repository too (Distribution 2.8 does), so the tag list decides which.
    [[noreturn]] void manifest_failure(const http::Exchange& ex, const Source& src,
                                       const Reference& ref, const std::string& version) {
        std::string code;
        const auto says = registry_says(ex, &code);
        if (ex.status == 404 && code != "NAME_UNKNOWN") {
            std::string tags;
            try {
                auto t = request(src, ref, "/tags/list?n=20", "GET", {}, 64 << 10);
                std::string tcode;
                const auto tsays = registry_says(t, &tcode);
                if (t.result == CURLE_OK &&
                    (tcode == "NAME_UNKNOWN" || (t.status == 404 && tcode.empty())))
                    raise(ErrorKind::name_unknown,
                          cat(printable(ref.path), " at ", src.host, tsays));
                if (t.result == CURLE_OK && t.status == 200) {
                    const auto j = nlohmann::json::parse(t.body, nullptr, false);
                    if (j.is_object() && j.contains("tags") && j["tags"].is_array())
                        for (const auto& tag : j["tags"])
                            if (tag.is_string() && tags.size() < 300)
                                tags += cat(tags.empty() ? "" : ", ",
                                            printable(tag.get<std::string>()));
                }
            } catch (RegistryError& e) {
                if (e.kind() == ErrorKind::name_unknown)
                    throw;
                // Anything else: the manifest's own 404 is the answer.
            }
            raise(ErrorKind::manifest_unknown,
                  cat(printable(ref.path), ":", printable(version), " at ", src.host, says,
                      tags.empty() ? "" : cat("; tags there include: ", tags)));
        }
        http_failure(ex, src, ref, cat("manifest ", printable(version)));
    }

    // Fetch a manifest (or index) by tag or digest, checked, from src.
    struct Fetched {
        std::string raw, content_type, digest;
    };

    Fetched get_manifest(const Source& src, const Reference& ref, const std::string& version) {
        auto ex = request(src, ref, cat("/manifests/", version), "GET",
                          {cat("Accept: ", manifest_accept())}, opts.max_manifest);
        if (ex.result != CURLE_OK)
            transport_failure(ex, src.host);
        if (ex.status != 200)
            manifest_failure(ex, src, ref, version);
        Fetched f{std::move(ex.body), ex.header("content-type"), {}};
        f.digest = storage::sha256_digest(f.raw);
        if (is_digest(version) && f.digest != version)
            raise(ErrorKind::digest_mismatch,
                  cat("manifest ", version, " from ", src.host, " hashes to ", f.digest));
        // Schema 1 first: its digest header covers the payload without the
        // signature, so the check below would misreport it as tampering.
        try {
            manifest_kind(f.raw, f.content_type);
        } catch (RegistryError&) {
            throw;
        } catch (Error& e) {
            raise(ErrorKind::protocol,
                  cat("manifest ", printable(version), " from ", src.host, ": ", e.what()));
        }
        const auto said = ex.header("docker-content-digest");
        if (!said.empty() && is_digest(said) && said != f.digest)
            raise(ErrorKind::digest_mismatch,
                  cat("manifest ", printable(version), " from ", src.host, " hashes to ", f.digest,
                      ", not ", said, " as the registry says"));
        return f;
    }

    Manifest resolve_from(const Source& src, const Reference& ref) {
        auto top = get_manifest(src, ref, ref.version());
        try {
            if (manifest_kind(top.raw, top.content_type) == ManifestKind::manifest) {
                Manifest m = parse_manifest(top.raw, top.content_type);
                m.top_digest = m.digest;
                return m;
            }
            const auto index = parse_index(top.raw);
            const std::string arch = opts.arch.empty() ? host_arch() : opts.arch;
            const auto& entry = select_platform(index, arch);
            log::verbose(printable(ref.familiar()), ": ", entry.platform->str(), " is ",
                         entry.blob.digest);
            if (entry.blob.size > opts.max_manifest)
                fail("the manifest for ", entry.platform->str(), " is ", entry.blob.size,
                     " bytes, more than ", opts.max_manifest);
            auto sub = get_manifest(src, ref, entry.blob.digest);
            if (sub.raw.size() != entry.blob.size)
                raise(ErrorKind::digest_mismatch,
                      cat("manifest ", entry.blob.digest, " has ", sub.raw.size(), " bytes, not ",
                          entry.blob.size, " as the index says"));
            Manifest m = parse_manifest(sub.raw, sub.content_type);
            m.top_digest = top.digest;
            m.platform = entry.platform->str();
            return m;
        } catch (RegistryError&) {
            throw;
        } catch (Error& e) {
            throw RegistryError(ErrorKind::protocol,
                                cat("bad manifest for ", printable(ref.familiar()), " from ",
                                    src.host, ": ", e.what()));
        }
    }

    // Try each source (mirrors first); the last one's error is the one shown.
    template <typename F>
    auto with_sources(const Reference& ref, F&& f) {
        const auto srcs = sources(ref);
        if (auto it = source_of.find(ref.host); it != source_of.end())
            for (const auto& s : srcs)
                if (s.host == it->second)
                    return f(s);
        for (std::size_t i = 0; i < srcs.size(); ++i) {
            try {
                auto r = f(srcs[i]);
                source_of[ref.host] = srcs[i].host;
                return r;
            } catch (RegistryError& e) {
                if (!srcs[i].mirror)
                    throw;
                log::warning("mirror ", srcs[i].host, " failed (", e.what(), "); trying ",
                             ref.host);
            }
        }
        raise(ErrorKind::protocol, "no source"); // not reached: the registry is always last
    }

    void fetch_blobs(const Source& src, const Reference& ref, const std::vector<Blob>& blobs,
                     storage::BlobCache& cache, Progress& progress);
};

Client::Client(Options opts)
    : impl_(std::make_unique<Impl>()) {
    static const bool global = [] {
        return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    }();
    if (!global)
        fail("can't initialize libcurl");
    impl_->opts = std::move(opts);
    if (impl_->opts.parallel < 1)
        impl_->opts.parallel = 1;
    impl_->easy = curl_easy_init();
    impl_->multi = curl_multi_init();
    if (!impl_->easy || !impl_->multi)
        fail("can't initialize libcurl: out of memory");
    curl_multi_setopt(impl_->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(impl_->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      static_cast<long>(impl_->opts.parallel));
}

Client::~Client() {
    if (impl_->multi)
        curl_multi_cleanup(impl_->multi);
    if (impl_->easy)
        curl_easy_cleanup(impl_->easy);
}

const Options& Client::options() const {
    return impl_->opts;
}

std::map<std::string, int> Client::request_counts() const {
    return impl_->counts;
}

namespace {

// The messages say which pull failed, as CONTRACT-registry.md promises.
template <typename F>
auto in_context(const Reference& ref, F&& f) {
    try {
        return f();
    } catch (RegistryError& e) {
        e.add_context(cat("can't pull ", printable(ref.familiar())));
        throw;
    }
}

} // namespace

Manifest Client::resolve(const Reference& ref) {
    return in_context(ref, [&] {
        return impl_->with_sources(ref,
                                   [&](const Source& s) { return impl_->resolve_from(s, ref); });
    });
}

std::optional<std::string> Client::head_digest(const Reference& ref) {
    return in_context(ref, [&] { return head_digest_(ref); });
}

std::optional<std::string> Client::head_digest_(const Reference& ref) {
    return impl_->with_sources(ref, [&](const Source& src) -> std::optional<std::string> {
        auto ex = impl_->request(src, ref, cat("/manifests/", ref.version()), "HEAD",
                                 {cat("Accept: ", manifest_accept())}, 0);
        if (ex.result != CURLE_OK)
            impl_->transport_failure(ex, src.host);
        if (ex.status != 200)
            impl_->manifest_failure(ex, src, ref, ref.version());
        const auto d = ex.header("docker-content-digest");
        if (is_digest(d))
            return d;
        return std::nullopt;
    });
}

std::string Client::fetch_small(const Reference& ref, const Blob& blob, std::size_t max) {
    return in_context(ref, [&] { return fetch_small_(ref, blob, max); });
}

std::string Client::fetch_small_(const Reference& ref, const Blob& blob, std::size_t max) {
    if (!is_digest(blob.digest))
        raise(ErrorKind::protocol, cat("bad digest '", printable(blob.digest.substr(0, 80)), "'"));
    if (blob.size > max)
        raise(ErrorKind::protocol,
              cat("blob ", blob.digest, " is ", blob.size, " bytes; at most ", max, " allowed"));
    return impl_->with_sources(ref, [&](const Source& src) {
        auto ex = impl_->request(src, ref, cat("/blobs/", blob.digest), "GET", {},
                                 static_cast<std::size_t>(blob.size));
        if (ex.result != CURLE_OK) {
            if (ex.body_too_big)
                raise(ErrorKind::digest_mismatch,
                      cat("blob ", blob.digest, " from ", src.host, " is longer than its declared ",
                          blob.size, " bytes"));
            impl_->transport_failure(ex, src.host);
        }
        if (ex.status != 200)
            impl_->http_failure(ex, src, ref, cat("blob ", blob.digest));
        if (ex.body.size() != blob.size)
            raise(ErrorKind::digest_mismatch, cat("blob ", blob.digest, " from ", src.host, " has ",
                                                  ex.body.size(), " bytes, not ", blob.size));
        const auto got = storage::sha256_digest(ex.body);
        if (got != blob.digest)
            raise(ErrorKind::digest_mismatch,
                  cat("blob ", blob.digest, " from ", src.host, " hashes to ", got));
        return std::move(ex.body);
    });
}

void Client::fetch(const Reference& ref, const std::vector<Blob>& blobs, storage::BlobCache& cache,
                   Progress& progress) {
    in_context(ref, [&] {
        return impl_->with_sources(ref, [&](const Source& src) {
            impl_->fetch_blobs(src, ref, blobs, cache, progress);
            return 0;
        });
    });
}

// ---- parallel blob transfers ------------------------------------------------

namespace {

struct Job {
    const Blob* blob = nullptr;
    std::unique_ptr<storage::BlobCache::Partial> part;
    std::unique_ptr<http::Exchange> ex;
    CURL* handle = nullptr;
    curl_slist* hdrs = nullptr;
    std::string url;
    bool send_auth = true;
    bool began = false, finished = false;
    bool resumed = false;   // this transfer started from a partial
    bool restarted = false; // already started over after a mismatch
    int retries = 0, redirects = 0, auths = 0;
    Clock::time_point not_before{};
};

void release(CURLM* multi, Job& j) {
    if (j.handle) {
        curl_multi_remove_handle(multi, j.handle);
        curl_easy_cleanup(j.handle);
        j.handle = nullptr;
    }
    curl_slist_free_all(j.hdrs);
    j.hdrs = nullptr;
}

} // namespace

void Client::Impl::fetch_blobs(const Source& src, const Reference& ref,
                               const std::vector<Blob>& blobs, storage::BlobCache& cache,
                               Progress& progress) {
    const std::string scope = scope_of(ref);
    const std::string home = http::origin(src.base(ref));
    std::vector<Job> jobs;
    for (const auto& b : blobs) {
        if (!is_digest(b.digest))
            raise(ErrorKind::protocol, cat("bad digest '", printable(b.digest.substr(0, 80)), "'"));
        // The same blob twice in a manifest is fetched once.
        if (std::any_of(jobs.begin(), jobs.end(),
                        [&](const Job& j) { return j.blob->digest == b.digest; }))
            continue;
        if (cache.has(b.digest)) {
            progress.begin(b, b.size);
            progress.done(b);
            continue;
        }
        Job j;
        j.blob = &b;
        j.url = cat(src.base(ref), "/blobs/", b.digest);
        jobs.push_back(std::move(j));
    }
    std::exception_ptr failure;
    int active = 0;

    const auto fail_with = [&](std::exception_ptr e) {
        if (!failure)
            failure = e;
    };

    const auto start = [&](Job& j) {
        if (!j.part) {
            j.part =
                std::make_unique<storage::BlobCache::Partial>(cache, j.blob->digest, j.blob->size);
            if (!j.began) {
                progress.begin(*j.blob, j.part->done() ? j.blob->size : j.part->offset());
                j.began = true;
            }
            if (j.part->done()) { // another process finished it while we waited
                j.finished = true;
                progress.done(*j.blob);
                return;
            }
            j.resumed = j.part->offset() > 0;
            if (j.resumed)
                log::verbose("resuming ", j.blob->digest, " at byte ", j.part->offset());
        }
        j.ex = std::make_unique<http::Exchange>();
        auto& ex = *j.ex;
        ex.url = j.url;
        ex.range_from = j.part->offset();
        ex.max_body = 64 << 10;
        ex.sink = [&j, &progress](std::span<const std::byte> data) {
            auto& e = *j.ex;
            if (e.range_from > 0 && e.status == 200) {
                // The server ignored Range and sends everything: start over.
                log::verbose(e.url, ": no range support; fetching ", j.blob->digest,
                             " from the start");
                j.part->restart();
                e.range_from = 0;
                j.resumed = false;
                progress.retry(*j.blob, "the server can't resume; starting over");
            }
            if (e.range_from > 0 && e.status == 206 && !e.response_headers.count("x-ch-range-ok")) {
                const auto cr = e.header("content-range"); // "bytes N-M/T"
                const auto want = cat("bytes ", e.range_from, "-");
                if (!cr.starts_with(want))
                    throw RegistryError(ErrorKind::protocol,
                                        cat("asked for ", j.blob->digest, " from byte ",
                                            e.range_from, ", got '", printable(cr.substr(0, 60)),
                                            "'"));
                e.response_headers["x-ch-range-ok"] = "1";
            }
            j.part->write(data);
            progress.advance(*j.blob, data.size());
            return true;
        };
        if (j.send_auth)
            ex.authorization = authorization(src, scope);
        j.handle = curl_easy_init();
        if (!j.handle)
            fail("can't start a transfer: out of memory");
        http::setup(j.handle, ex, opts);
        if (!ex.authorization.empty())
            j.hdrs = curl_slist_append(j.hdrs, cat("Authorization: ", ex.authorization).c_str());
        curl_easy_setopt(j.handle, CURLOPT_HTTPHEADER, j.hdrs);
        curl_easy_setopt(j.handle, CURLOPT_PRIVATE, &j);
        count("GET");
        log::debug("GET ", printable(ex.url),
                   ex.range_from ? cat(" from byte ", ex.range_from) : std::string());
        curl_multi_add_handle(multi, j.handle);
        ++active;
    };

    const auto retry_later = [&](Job& j, std::string why, std::chrono::milliseconds wait) {
        if (j.retries >= opts.retries)
            return false;
        ++j.retries;
        log::verbose(j.blob->digest, ": ", why, "; retry ", j.retries, " in ", wait.count(), " ms");
        progress.retry(*j.blob, why);
        j.not_before = Clock::now() + wait;
        return true;
    };

    // What to do with a finished exchange.
    const auto settle = [&](Job& j) {
        auto& ex = *j.ex;
        const auto what = cat("blob ", j.blob->digest, " from ", src.host);
        if (ex.sink_error) {
            try {
                std::rethrow_exception(ex.sink_error);
            } catch (RegistryError&) {
                throw;
            } catch (SysError& e) {
                if (j.part && j.part->disk_full())
                    raise(ErrorKind::disk_full, cat("can't store ", j.blob->digest, " in ",
                                                    cache.dir().string(), ": ", e.what()));
                throw;
            } catch (Error& e) {
                raise(ErrorKind::digest_mismatch, cat(what, ": ", e.what()));
            }
        }
        if (ex.result != CURLE_OK) {
            if (http::is_retryable(ex.result) &&
                retry_later(j, ex.curl_message(), backoff(j.retries + 1)))
                return;
            transport_failure(ex, what);
        }
        if (ex.status == 200 || ex.status == 206) {
            try {
                j.part->finish();
            } catch (Error& e) {
                j.part.reset();
                // A resumed prefix may be what was wrong: one fresh try.
                if (j.resumed && !j.restarted) {
                    j.restarted = true;
                    progress.retry(*j.blob, "digest mismatch after resuming; starting over");
                    return;
                }
                std::string why = e.what();
                if (why.starts_with("digest mismatch: blob "))
                    why = why.substr(why.find(" hashes to ") + 1);
                raise(ErrorKind::digest_mismatch, cat(what, ": ", why));
            }
            j.finished = true;
            progress.done(*j.blob);
            return;
        }
        if (ex.status >= 300 && ex.status < 400 && !ex.header("location").empty()) {
            if (++j.redirects > 10)
                raise(ErrorKind::protocol, cat(what, ": more than 10 redirects"));
            j.url = http::resolve_location(j.url, ex.header("location"));
            if (!j.url.starts_with("https://") && !j.url.starts_with("http://"))
                raise(ErrorKind::protocol, cat(what, ": redirect to a URL that is not HTTP(S)"));
            // The registry's credentials are for the registry only.
            j.send_auth = http::origin(j.url) == home;
            return;
        }
        if (ex.status == 401 && j.send_auth && j.auths < 2) {
            ++j.auths;
            if (authenticate(src, scope, ex))
                return;
        }
        if (ex.status == 416) { // the partial is longer than the blob the server has
            j.part->restart();
            if (retry_later(j, "HTTP 416", std::chrono::milliseconds(0)))
                return;
        }
        if (ex.status == 429 || ex.status / 100 == 5) {
            auto wait = backoff(j.retries + 1);
            if (auto ra = parse_retry_after(ex.header("retry-after"), std::time(nullptr))) {
                if (*ra <= max_retry_after)
                    wait = *ra;
                else
                    wait = std::chrono::milliseconds::max();
            }
            if (wait != std::chrono::milliseconds::max() && retry_later(j, status_text(ex), wait))
                return;
        }
        http_failure(ex, src, ref, cat("blob ", j.blob->digest));
    };

    while (!failure) {
        // Start what may start.
        const auto now = Clock::now();
        Clock::time_point next_wake = Clock::time_point::max();
        bool pending = false;
        for (auto& j : jobs) {
            if (j.finished || j.handle)
                continue;
            pending = true;
            if (active >= opts.parallel)
                continue;
            if (j.not_before > now) {
                next_wake = std::min(next_wake, j.not_before);
                continue;
            }
            try {
                start(j);
            } catch (...) {
                fail_with(std::current_exception());
                break;
            }
        }
        if (failure)
            break;
        if (!pending && active == 0)
            break;
        int running = 0;
        curl_multi_perform(multi, &running);
        int left = 0;
        while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
            if (m->msg != CURLMSG_DONE)
                continue;
            Job* j = nullptr;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &j);
            j->ex->result = m->data.result;
            long code = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            j->ex->status = code;
            release(multi, *j);
            --active;
            log::debug("GET ", printable(j->ex->url), ": ",
                       j->ex->result == CURLE_OK ? status_text(*j->ex) : j->ex->curl_message());
            try {
                settle(*j);
            } catch (...) {
                fail_with(std::current_exception());
            }
        }
        if (failure)
            break;
        // A transfer that just ended may have been the last, or freed a
        // slot for one waiting: go round at once rather than poll idly.
        bool waiting = false, startable = false;
        for (const auto& j : jobs)
            if (!j.finished && !j.handle) {
                waiting = true;
                startable = startable || j.not_before <= Clock::now();
            }
        if (active == 0 && !waiting)
            break;
        if (startable && active < opts.parallel)
            continue;
        int timeout = 1000;
        if (next_wake != Clock::time_point::max()) {
            const auto ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(next_wake - Clock::now())
                    .count();
            timeout = static_cast<int>(std::clamp<long long>(ms, 0, 1000));
        }
        if (active > 0)
            curl_multi_poll(multi, nullptr, 0, timeout, nullptr);
        else if (timeout > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(timeout));
    }
    // Stop the others; their partials stay for the next pull.
    for (auto& j : jobs)
        release(multi, j);
    if (failure)
        std::rethrow_exception(failure);
}

} // namespace ch::registry

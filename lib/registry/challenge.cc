// challenge.cc: hand-written parsers for the few HTTP fields we need. They
// read input from any server the user names (and from redirects), so they
// never throw on bad input and never read past it.
#include "registry/challenge.hh"

#include <algorithm>
#include <cctype>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "util/strings.hh"

namespace ch::registry {

namespace {

bool is_token_char(char c) {
    // RFC 7230 tchar
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

struct Cursor {
    std::string_view s;
    std::size_t i = 0;

    bool end() const { return i >= s.size(); }

    void skip_ws() {
        while (!end() && (s[i] == ' ' || s[i] == '\t'))
            ++i;
    }

    std::string_view token() {
        const auto start = i;
        while (!end() && is_token_char(s[i]))
            ++i;
        return s.substr(start, i - start);
    }

    // A quoted-string with backslash escapes; false if unterminated.
    bool quoted(std::string& out) {
        ++i; // the opening quote
        while (!end()) {
            const char c = s[i++];
            if (c == '"')
                return true;
            if (c == '\\' && !end())
                out += s[i++];
            else
                out += c;
        }
        return false;
    }
};

} // namespace

std::vector<Challenge> parse_challenges(std::string_view header) {
    std::vector<Challenge> out;
    Cursor c{header};
    while (!c.end()) {
        c.skip_ws();
        if (!c.end() && c.s[c.i] == ',') {
            ++c.i;
            continue;
        }
        const auto scheme = c.token();
        if (scheme.empty()) { // garbage: skip to the next comma
            while (!c.end() && c.s[c.i] != ',')
                ++c.i;
            continue;
        }
        Challenge ch{lower(scheme), {}};
        // auth-params: name=value pairs separated by commas. A token that is
        // not followed by '=' starts the next challenge.
        while (true) {
            c.skip_ws();
            const auto save = c.i;
            const auto name = c.token();
            c.skip_ws();
            if (name.empty() || c.end() || c.s[c.i] != '=') {
                c.i = save;
                break; // the next challenge's scheme, or the end
            }
            // "name=" with no value is either an empty parameter or a token68
            // ("Basic abc=="), which registries don't use: either way, skip it.
            {
                auto j = c.i;
                while (j < c.s.size() && (c.s[j] == '=' || c.s[j] == ' ' || c.s[j] == '\t'))
                    ++j;
                if (j >= c.s.size() || c.s[j] == ',') {
                    c.i = j;
                    if (!c.end())
                        ++c.i;
                    continue;
                }
            }
            ++c.i; // '='
            c.skip_ws();
            std::string value;
            if (!c.end() && c.s[c.i] == '"') {
                if (!c.quoted(value))
                    break;
            } else {
                value = std::string(c.token());
            }
            ch.params.emplace(lower(name), std::move(value));
            c.skip_ws();
            if (!c.end() && c.s[c.i] == ',')
                ++c.i;
            else
                break;
        }
        out.push_back(std::move(ch));
        // Anything unexpected after a challenge: skip to the next comma.
        c.skip_ws();
        while (!c.end() && c.s[c.i] != ',' && !is_token_char(c.s[c.i]))
            ++c.i;
    }
    return out;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, std::time_t now) {
    constexpr long long cap = 3600;
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r'))
        value.remove_suffix(1);
    if (value.empty())
        return std::nullopt;
    if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        long long v = 0;
        for (char c : value) {
            v = v * 10 + (c - '0');
            if (v > cap)
                return std::chrono::seconds(cap);
        }
        return std::chrono::seconds(v);
    }
    if (value.size() > 64)
        return std::nullopt;
    // HTTP-date, in any of its three forms: curl_getdate reads them all.
    const std::string s(value);
    const time_t t = curl_getdate(s.c_str(), nullptr);
    if (t == static_cast<time_t>(-1))
        return std::nullopt;
    if (t <= now)
        return std::chrono::seconds(0);
    return std::chrono::seconds(std::min<long long>(t - now, cap));
}

std::string oci_error_message(std::string_view body, std::string* first_code) {
    constexpr std::size_t max_len = 400;
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return {};
    const auto it = j.find("errors");
    if (it == j.end() || !it->is_array())
        return {};
    std::string out;
    for (const auto& e : *it) {
        if (!e.is_object())
            continue;
        std::string code, message;
        if (auto c = e.find("code"); c != e.end() && c->is_string())
            code = c->get<std::string>();
        if (auto m = e.find("message"); m != e.end() && m->is_string())
            message = m->get<std::string>();
        if (code.empty() && message.empty())
            continue;
        if (first_code && first_code->empty())
            *first_code = code;
        if (!out.empty())
            out += "; ";
        out += code.empty() ? message : message.empty() ? code : cat(code, ": ", message);
        if (out.size() > max_len)
            break;
    }
    out = printable(out);
    if (out.size() > max_len)
        out = out.substr(0, max_len) + "...";
    return out;
}

std::string mask_header(std::string_view line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n'))
        line.remove_suffix(1);
    // Anywhere in the line: libcurl's HTTP/2 trace shows request headers as
    // text ("h2h3 [authorization: Basic ...]"), not only as header lines.
    const std::string low = lower(line);
    for (std::string_view key :
         {"proxy-authorization:", "authorization:", "set-cookie:", "cookie:"}) {
        const auto pos = low.find(key);
        if (pos == std::string::npos)
            continue;
        auto value = line.substr(pos + key.size());
        while (!value.empty() && value.front() == ' ')
            value.remove_prefix(1);
        // Keep the scheme ("Bearer", "Basic"): it helps and is no secret.
        std::string_view scheme;
        if (key.ends_with("authorization:"))
            if (const auto space = value.find(' '); space != std::string_view::npos)
                scheme = value.substr(0, space);
        return printable(cat(line.substr(0, pos + key.size()), " ", scheme,
                             scheme.empty() ? "" : " ", "***", line.ends_with(']') ? "]" : ""));
    }
    return printable(line);
}

} // namespace ch::registry

// strings.cc: see strings.hh.
#include "util/strings.hh"

#include <charconv>

namespace ch {

namespace {
// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is invalid.
std::size_t utf8_len(std::string_view s, std::size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (i + n > s.size())
        return 0;
    for (std::size_t k = 1; k < n; k++)
        if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80)
            return 0;
    return n;
}
} // namespace

std::string printable(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); i++) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        } else if (c < 0x80) {
            out += static_cast<char>(c);
        } else if (const std::size_t n = utf8_len(s, i); n > 0) {
            // C1 controls (U+0080..U+009F) are encoded c2 80..c2 9f.
            if (n == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) {
                out += "\\xc2\\x";
                out += hex[static_cast<unsigned char>(s[i + 1]) >> 4];
                out += hex[static_cast<unsigned char>(s[i + 1]) & 0xf];
            } else {
                out.append(s.substr(i, n));
            }
            i += n - 1;
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        }
    }
    return out;
}

std::string quote_name(std::string_view s, std::size_t max) {
    if (s.size() <= max)
        return cat("'", printable(s), "'");
    // Cut on character boundaries, so a multibyte character is kept whole
    // or dropped rather than shown as \x escapes.
    auto is_continuation = [&](std::size_t i) {
        return (static_cast<unsigned char>(s[i]) & 0xc0) == 0x80;
    };
    std::size_t head = max / 2;
    while (head > 0 && is_continuation(head))
        head--;
    std::size_t tail = s.size() - (max - max / 2);
    while (tail < s.size() && is_continuation(tail))
        tail++;
    return cat("'", printable(s.substr(0, head)), "...", printable(s.substr(tail)), "' (", s.size(),
               " bytes)");
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (true) {
        const std::size_t end = s.find(sep, start);
        parts.emplace_back(s.substr(start, end - start));
        if (end == std::string_view::npos)
            break;
        start = end + 1;
    }
    return parts;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
    std::string out;
    for (std::size_t i = 0; i < parts.size(); i++) {
        if (i > 0)
            out += sep;
        out += parts[i];
    }
    return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.starts_with(prefix);
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.ends_with(suffix);
}

bool parse_uint(std::string_view s, unsigned long long max, unsigned long long& out) {
    if (s.empty() || s.size() > 20)
        return false;
    unsigned long long v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 10);
    if (ec != std::errc() || end != s.data() + s.size() || v > max)
        return false;
    out = v;
    return true;
}

} // namespace ch

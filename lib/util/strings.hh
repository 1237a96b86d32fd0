// strings.hh: small string helpers. cat() stands in for <format>, which GCC 12
// lacks; printable() makes names from images and registries safe to print.
#pragma once

#include <charconv>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace ch {

namespace detail {
// Appends without iostreams: the first ostringstream of a process pays for
// libstdc++'s locale set-up, which is measurable in ch-run's start-up.
inline void cat_one(std::string& out, const std::string& s) {
    out += s;
}

inline void cat_one(std::string& out, std::string_view s) {
    out += s;
}

inline void cat_one(std::string& out, const char* s) {
    out += s;
}

inline void cat_one(std::string& out, char c) {
    out += c;
}

inline void cat_one(std::string& out, const std::filesystem::path& p) {
    out += p.string();
}

template <typename T>
void cat_one(std::string& out, const T& part) {
    if constexpr (std::is_integral_v<T>) {
        char buf[24];
        const auto res = std::to_chars(buf, buf + sizeof buf, part);
        out.append(buf, static_cast<std::size_t>(res.ptr - buf));
    } else {
        std::ostringstream s;
        s << part;
        out += s.str();
    }
}
} // namespace detail

// Concatenate strings, numbers and paths (printed as given, without the
// quotes operator<< would add) into one message.
template <typename... Parts>
std::string cat(const Parts&... parts) {
    std::string out;
    (detail::cat_one(out, parts), ...);
    return out;
}

// Escape control characters, backslash and bytes that are not valid UTF-8 as
// \n, \t, \xHH, so a hostile name can't move the cursor or recolour a terminal.
std::string printable(std::string_view s);

// A name from an image or archive, escaped as printable() does and quoted,
// for one-line messages: 'etc/hosts'. A name longer than max bytes keeps
// its first and last max/2 bytes around "..." and says how long it was:
// 'a/a/a...a/a/f' (40001 bytes). A hostile 40 KB name thus can't bury the
// reason at the end of the message.
std::string quote_name(std::string_view s, std::size_t max = 160);

std::vector<std::string> split(std::string_view s, char sep);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);

// Strict parse of a non-negative decimal integer that fits in T; nullopt-like
// failure is signalled by returning false.
bool parse_uint(std::string_view s, unsigned long long max, unsigned long long& out);

} // namespace ch

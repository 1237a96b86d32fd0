// strings.hh: small string helpers. cat() stands in for <format>, which GCC 12
// lacks; printable() makes names from images and registries safe to print.
#pragma once

#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace ch {

namespace detail {
template <typename T>
void cat_one(std::ostringstream& out, const T& part) {
    // operator<< on a path adds quotes; messages print paths as given.
    if constexpr (std::is_same_v<T, std::filesystem::path>)
        out << part.string();
    else
        out << part;
}
} // namespace detail

template <typename... Parts>
std::string cat(const Parts&... parts) {
    std::ostringstream out;
    (detail::cat_one(out, parts), ...);
    return out.str();
}

// Escape control characters, backslash and bytes that are not valid UTF-8 as
// \n, \t, \xHH, so a hostile name can't move the cursor or recolour a terminal.
std::string printable(std::string_view s);

std::vector<std::string> split(std::string_view s, char sep);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);

// Strict parse of a non-negative decimal integer that fits in T; nullopt-like
// failure is signalled by returning false.
bool parse_uint(std::string_view s, unsigned long long max, unsigned long long& out);

} // namespace ch

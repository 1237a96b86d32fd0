// log.hh: the one logging entry point. Everything goes to stderr (stdout
// belongs to the user's command and to machine-readable output). The level
// is checked before any message is built.
#pragma once

#include <string>
#include <string_view>

#include "util/strings.hh"

namespace ch::log {

// Verbosity: 0 is the default; each -v adds one, each -q takes one away.
enum class Level : int { error = -3, warning = -1, info = 0, verbose = 1, debug = 2, trace = 3 };

void init(std::string_view program, int verbosity);
int verbosity() noexcept;
const std::string& program() noexcept;

inline bool enabled(Level l) noexcept {
    return l == Level::error || verbosity() >= static_cast<int>(l);
}

void emit(Level l, const std::string& msg);
// Warnings are also collected, and printed once more at the end of a long
// command so that they are not lost in its output.
void reprint_warnings();
// Whether progress meters may draw: stderr is a terminal and not quieted.
bool progress_enabled() noexcept;

template <typename... Parts>
void error(const Parts&... p) {
    emit(Level::error, cat(p...));
}

template <typename... Parts>
void warning(const Parts&... p) {
    if (enabled(Level::warning))
        emit(Level::warning, cat(p...));
}

template <typename... Parts>
void info(const Parts&... p) {
    if (enabled(Level::info))
        emit(Level::info, cat(p...));
}

template <typename... Parts>
void verbose(const Parts&... p) {
    if (enabled(Level::verbose))
        emit(Level::verbose, cat(p...));
}

template <typename... Parts>
void debug(const Parts&... p) {
    if (enabled(Level::debug))
        emit(Level::debug, cat(p...));
}

template <typename... Parts>
void trace(const Parts&... p) {
    if (enabled(Level::trace))
        emit(Level::trace, cat(p...));
}

} // namespace ch::log

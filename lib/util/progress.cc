// progress.cc: see progress.hh.
#include "util/progress.hh"

#include <cstdio>

#include <unistd.h>

#include "util/log.hh"
#include "util/strings.hh"

namespace ch {

namespace {

constexpr auto redraw_every = std::chrono::milliseconds(100);

void put(const std::string& s) {
    // Best effort: a meter that can't draw must not fail the operation.
    const ssize_t n = ::write(STDERR_FILENO, s.data(), s.size());
    (void)n;
}

} // namespace

std::string human_bytes(std::uint64_t n) {
    static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    if (n < 1024)
        return cat(n, " B");
    double v = static_cast<double>(n);
    std::size_t u = 0;
    while (v >= 1024 && u + 1 < std::size(units)) {
        v /= 1024;
        u++;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
    return buf;
}

Progress::Progress(std::string label)
    : label_(std::move(label))
    , enabled_(log::progress_enabled())
    , next_draw_(std::chrono::steady_clock::now() + redraw_every) {}

Progress::~Progress() {
    clear();
}

void Progress::update(std::uint64_t entries, std::uint64_t bytes) {
    if (!enabled_)
        return;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_draw_)
        return;
    next_draw_ = now + redraw_every;
    // \r and "erase to end of line" redraw in place.
    put(cat("\r\x1b[K", log::program(), ": ", label_, ": ", entries, " entries, ",
            human_bytes(bytes)));
    drawn_ = true;
}

void Progress::clear() {
    if (drawn_)
        put("\r\x1b[K");
    drawn_ = false;
}

} // namespace ch

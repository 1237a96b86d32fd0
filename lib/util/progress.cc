// progress.cc: see progress.hh.
#include "util/progress.hh"

#include <algorithm>
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

namespace {

std::string clock_text(double seconds) {
    const auto s = static_cast<unsigned long long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600)
        std::snprintf(buf, sizeof buf, "%llu:%02llu:%02llu", s / 3600, s / 60 % 60, s % 60);
    else
        std::snprintf(buf, sizeof buf, "%llu:%02llu", s / 60, s % 60);
    return buf;
}

double since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace

TransferMeter::TransferMeter(std::string label)
    : label_(std::move(label))
    , enabled_(log::progress_enabled())
    , start_(std::chrono::steady_clock::now())
    , next_draw_(start_) {}

TransferMeter::~TransferMeter() {
    clear();
}

std::string TransferMeter::describe(std::uint64_t got, std::uint64_t total, double seconds,
                                    std::uint64_t got_this_run) {
    std::string s = cat(human_bytes(got), " / ", human_bytes(total));
    // Rate and time left from this run's bytes only: cached ones took no time.
    if (seconds > 0.2 && got_this_run > 0) {
        const double rate = static_cast<double>(got_this_run) / seconds;
        s += cat("  ", human_bytes(static_cast<std::uint64_t>(rate)), "/s");
        if (total > got)
            s += cat("  ", clock_text(static_cast<double>(total - got) / rate), " left");
    }
    return s;
}

TransferMeter::Item* TransferMeter::find(const std::string& name) {
    for (auto& i : items_)
        if (i.name == name)
            return &i;
    return nullptr;
}

void TransferMeter::add(const std::string& name, std::uint64_t size) {
    if (find(name) == nullptr) {
        Item i;
        i.name = name;
        i.size = size;
        items_.push_back(std::move(i));
    }
}

void TransferMeter::begin(const std::string& name, std::uint64_t already) {
    add(name, already);
    Item* i = find(name);
    i->got = i->already = already;
    i->active = true;
    i->started = std::chrono::steady_clock::now();
    draw(false);
}

void TransferMeter::advance(const std::string& name, std::uint64_t n) {
    if (Item* i = find(name)) {
        i->got += n;
        draw(false);
    }
}

void TransferMeter::done(const std::string& name) {
    Item* i = find(name);
    if (i == nullptr)
        return;
    i->active = false;
    i->finished = true;
    i->got = std::max(i->got, i->size);
    if (!enabled_) {
        if (i->already >= i->size)
            log::verbose(label_, " ", i->name, ": ", human_bytes(i->size), ", already here");
        else
            log::verbose(label_, " ", i->name, ": ", human_bytes(i->size), " in ",
                         clock_text(since(i->started)), " (",
                         describe(i->got, i->size, since(i->started), i->got - i->already), ")");
    }
    draw(true);
}

void TransferMeter::retry(const std::string& name, std::string_view why) {
    clear();
    log::info(label_, " ", name, ": retrying: ", why);
}

void TransferMeter::clear() {
    if (lines_ == 0)
        return;
    // Up to the first bar, then erase to the end of the screen.
    put(cat("\r\x1b[", lines_, "A\x1b[J"));
    lines_ = 0;
}

void TransferMeter::draw(bool force) {
    if (!enabled_)
        return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now < next_draw_)
        return;
    next_draw_ = now + redraw_every;
    std::string out;
    if (lines_ > 0)
        out = cat("\r\x1b[", lines_, "A\x1b[J");
    std::size_t lines = 0;
    std::uint64_t got = 0, total = 0, this_run = 0;
    std::size_t finished = 0;
    for (const auto& i : items_) {
        got += i.got;
        total += i.size;
        this_run += i.got - i.already;
        finished += i.finished ? 1 : 0;
        if (!i.active)
            continue;
        out += cat(log::program(), ": ", label_, " ", i.name, "  ",
                   describe(i.got, i.size, since(i.started), i.got - i.already), "\n");
        lines++;
    }
    out += cat(log::program(), ": ", label_, "s done ", finished, "/", items_.size(), "  ",
               describe(got, total, since(start_), this_run), "\n");
    lines++;
    put(out);
    lines_ = lines;
}

} // namespace ch

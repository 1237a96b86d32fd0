// progress.hh: a one-line progress meter on stderr for long operations. It
// draws only where log::progress_enabled() (a terminal, not quieted), at most
// about ten times a second, and leaves no trace in batch logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ch {

class Progress {
public:
    explicit Progress(std::string label);
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
    ~Progress(); // erases the line if one was drawn

    // Report the running totals; redraws only if enough time has passed.
    void update(std::uint64_t entries, std::uint64_t bytes);
    // Erase the line (before printing anything else).
    void clear();

private:
    std::string label_;
    bool enabled_;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point next_draw_;
};

// Several transfers at once (a pull's layers): on a terminal, one bar per
// transfer in progress and a total line (bytes, rate, time left), redrawn in
// place at most ten times a second; in batch, at -v, one line per transfer
// when it ends; at -q nothing.
class TransferMeter {
public:
    explicit TransferMeter(std::string label);
    TransferMeter(const TransferMeter&) = delete;
    TransferMeter& operator=(const TransferMeter&) = delete;
    ~TransferMeter(); // erases the bars

    // Announce a transfer of size bytes; its name shows on its bar.
    void add(const std::string& name, std::uint64_t size);
    // already: bytes there before this run (cached, resumed).
    void begin(const std::string& name, std::uint64_t already);
    void advance(const std::string& name, std::uint64_t n);
    void done(const std::string& name);
    void retry(const std::string& name, std::string_view why);
    // Erase the bars (before printing anything else).
    void clear();

    // "1.2 MiB / 3.4 MiB  5.6 MiB/s  0:07 left", for a bar and for tests.
    static std::string describe(std::uint64_t got, std::uint64_t total, double seconds,
                                std::uint64_t got_this_run);

private:
    struct Item {
        std::string name;
        std::uint64_t size = 0, got = 0, already = 0;
        bool active = false, finished = false;
        std::chrono::steady_clock::time_point started;
    };

    Item* find(const std::string& name);
    void draw(bool force);

    std::string label_;
    bool enabled_;
    std::vector<Item> items_;
    std::size_t lines_ = 0; // drawn last time
    std::chrono::steady_clock::time_point start_, next_draw_;
};

// 1536 -> "1.5 KiB"; below 1 KiB in bytes.
std::string human_bytes(std::uint64_t n);

} // namespace ch

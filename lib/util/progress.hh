// progress.hh: a one-line progress meter on stderr for long operations. It
// draws only where log::progress_enabled() (a terminal, not quieted), at most
// about ten times a second, and leaves no trace in batch logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

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

// 1536 -> "1.5 KiB"; below 1 KiB in bytes.
std::string human_bytes(std::uint64_t n);

} // namespace ch

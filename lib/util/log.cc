// log.cc: see log.hh. One process-wide level, set once by bin/.
#include "util/log.hh"

#include <chrono>
#include <mutex>
#include <vector>

#include <unistd.h>

namespace ch::log {

namespace {
int level_ = 0;
std::string program_ = "ch";
std::vector<std::string> warnings_;
std::chrono::steady_clock::time_point first_warning_;
// ch-image fetches layers on one thread while it unpacks on another; both log.
std::mutex mutex_;
// Warnings older than this are printed again at the end: by then other
// output may have scrolled them away.
constexpr auto reprint_after = std::chrono::seconds(5);

void write_all(const std::string& s) {
    const char* p = s.data();
    std::size_t left = s.size();
    while (left > 0) {
        const ssize_t n = ::write(STDERR_FILENO, p, left);
        if (n <= 0)
            return; // nowhere left to report a failure to report
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

std::string prefix() {
    // The pid tells MPI ranks apart once the user asks for detail.
    if (level_ >= static_cast<int>(Level::verbose))
        return cat(program_, "[", ::getpid(), "]: ");
    return program_ + ": ";
}
} // namespace

void init(std::string_view program, int verbosity) {
    program_ = program;
    level_ = verbosity;
}

int verbosity() noexcept {
    return level_;
}

const std::string& program() noexcept {
    return program_;
}

void emit(Level l, const std::string& msg) {
    std::string line = prefix();
    // Errors read "TOOL: can't VERB OBJECT: reason", with no "error:" label.
    if (l == Level::warning)
        line += "warning: ";
    line += msg;
    line += '\n';
    const std::lock_guard<std::mutex> hold(mutex_);
    if (l == Level::warning) {
        if (warnings_.empty())
            first_warning_ = std::chrono::steady_clock::now();
        warnings_.push_back(msg);
    }
    write_all(line);
}

void reprint_warnings() {
    const std::lock_guard<std::mutex> hold(mutex_);
    if (warnings_.empty() || !enabled(Level::warning) ||
        std::chrono::steady_clock::now() - first_warning_ < reprint_after)
        return;
    write_all(cat(prefix(), "reprinting ", warnings_.size(), " warning(s)\n"));
    for (const auto& w : warnings_)
        write_all(cat(prefix(), "warning: ", w, "\n"));
    warnings_.clear();
}

bool progress_enabled() noexcept {
    return level_ >= 0 && ::isatty(STDERR_FILENO) == 1;
}

} // namespace ch::log

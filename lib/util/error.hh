// error.hh: the error model. Every failure is an exception carrying one
// user-facing line ("can't VERB OBJECT: reason") and the exit code the tool
// should end with. bin/ turns it into "TOOL: message" and that exit code.
#pragma once

#include <cerrno>
#include <exception>
#include <string>
#include <string_view>

#include "util/strings.hh"

namespace ch {

// Charliecloud's exit codes; 64 (usage) is argp's.
enum class Exit : int { misc = 31, cmd = 49, usage = 64, squash = 84 };

class Error : public std::exception {
public:
    explicit Error(std::string msg, Exit code = Exit::misc);

    const char* what() const noexcept override { return msg_.c_str(); }

    // "prefix: old message"
    void add_context(std::string_view prefix);

    Exit exit_code() const noexcept { return code_; }

    void set_exit_code(Exit code) noexcept { code_ = code; }

private:
    std::string msg_;
    Exit code_;
};

// An error from a system call: the message ends with strerror(err).
class SysError : public Error {
public:
    SysError(int err, std::string_view msg, Exit code = Exit::misc);

    int err() const noexcept { return err_; }

private:
    int err_;
};

// Bad command line: bin/ adds a hint to --help and exits 64.
class UsageError : public Error {
public:
    explicit UsageError(std::string msg)
        : Error(std::move(msg), Exit::usage) {}
};

// errno is read first: argument evaluation order is unspecified, and building
// the message can clobber it.
template <typename... Parts>
[[noreturn]] void throw_errno(const Parts&... parts) {
    const int err = errno;
    throw SysError(err, cat(parts...));
}

template <typename... Parts>
[[noreturn]] void throw_errno_code(Exit code, const Parts&... parts) {
    const int err = errno;
    throw SysError(err, cat(parts...), code);
}

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
    throw Error(cat(parts...));
}

} // namespace ch

// child.hh: run a function in a forked child and learn whether it threw.
// The child follows the rules for code after fork: it never returns into the
// caller's stack (no destructor of the parent's objects runs twice), reports
// over a pipe, and ends with _exit.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <sys/types.h>

namespace ch {

// Run body in a child process and wait for it. Returns nullopt on success,
// else the child's error message (what() of what it threw, or how it died).
std::optional<std::string> run_in_child(const std::function<void()>& body);

// waitpid(2) status as a shell would report it: the exit code, or 128+N for
// a signal.
int shell_status(int wait_status);

} // namespace ch

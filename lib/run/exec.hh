// exec.hh: the last steps of ch-run, inside the container after pivot_root:
// build the environment (reading the image's /ch/environment if asked),
// change directory, drop every privilege and exec the command.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "run/options.hh"
#include "run/plan.hh"

namespace ch::run {

// The largest /ch/environment ch-run reads (--set-env without argument).
constexpr std::size_t image_env_max_bytes = 1 << 20;

// Read a file the image provides: it must be (or lead to) a regular file of
// at most max_bytes. Opened non-blocking, so a FIFO can't hang ch-run, and
// checked through the descriptor, so a symlink to /dev/zero can't fill
// memory. Throws Error naming path.
std::string read_image_file(const fs::path& path, std::size_t max_bytes);

// Environment, working directory, exec. Returns only by throwing: Error (31),
// exec failure (Exit::cmd, 49).
[[noreturn]] void enter_command(const RunOptions& opts, const Plan& plan);

} // namespace ch::run

// run.hh: the facade of lib/run, what bin/ch-run.cc calls.
#pragma once

#include <string>
#include <vector>

#include "run/options.hh"

namespace ch::run {

// Resolve the image, plan, enter the container and exec the command. Returns
// only by throwing: Error (exit 31), SquashFS errors (84), exec failure (49).
[[noreturn]] void run(const RunOptions& opts);

} // namespace ch::run

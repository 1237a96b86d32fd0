// host.hh: what ch-run learns about the host before planning (the invoking
// ids, $USER, $HOME, $TMPDIR, the names for the container's passwd and group
// files). Read once, before any namespace is made.
#pragma once

#include <filesystem>
#include <functional>

#include "run/plan.hh"

namespace ch::run {

// image_has answers, for --home, whether a path exists inside the image.
// Throws Error if $USER is not set.
HostFacts probe_host(std::function<bool(const fs::path&)> image_has);

} // namespace ch::run

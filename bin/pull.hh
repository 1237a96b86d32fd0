// pull.hh: ch-image pull, the steps: registry client (lib/registry) ->
// blob cache (lib/storage) -> layers through the unpacking rules
// (lib/image/unpack_image) -> storage or a file, published with one rename.
// It lives in bin/ because it is the one place that joins lib/registry with
// lib/image, and no other tool needs it.
//
// The fetch runs on its own thread so that the first layers are unpacked
// while later ones still arrive. Nothing is visible before it is complete:
// blobs get their names in the cache after their digest is checked, and the
// image appears by one rename of its staging directory, so a pull killed at
// any moment (SIGKILL, or SIGINT/SIGTERM while fetching, which keep their
// default action) leaves only debris that the next pull sweeps or resumes.
#pragma once

#include "cli.hh"
#include "storage/layout.hh"

namespace ch::config {
class Config;
}

namespace ch::pull {

// p: ch-image's parsed command line (REF [DEST_NAME], the pull options).
int pull(const cli::Parsed& p, const config::Config& cfg, const storage::StorageDir& storage);

} // namespace ch::pull

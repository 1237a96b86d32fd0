// pull.hh: ch-image pull, the steps: registry client (lib/registry) ->
// blob cache (lib/storage) -> layers through the unpacking rules
// (lib/image/unpack_image) -> storage or a file, published with one rename.
// It lives in bin/ because it is the one place that joins lib/registry with
// lib/image, and no other tool needs it.
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

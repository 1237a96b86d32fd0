// source_layers.hh: an OCI image's layers (tarballs, in order) as one Source
// whose entries are only those that survive to the final image. A first
// pass reads every layer's headers (no file data) and indexes what later
// layers do to each path: whiteouts (".wh.NAME"), opaque directories
// (".wh..wh..opq"), and replacements (a later entry at the same path, or a
// non-directory at a parent). The second pass emits, layer by layer, each
// entry nothing later removes or replaces, and drops the whiteout markers.
//
// So the stream needs no removal: a tar sink (which can only add) can write
// it, a SquashFS sink stores no data that a later layer hides, and the same
// bytes come out for the same layers. Paths are compared after
// normalisation (split_entry_path and the tarbomb wrapper), not through
// symlinks: layer tools record real paths, and the unpacking rules still
// resolve whatever the stream holds.
//
// A directory present in several layers is emitted once, where it first
// appears, with the metadata of its last appearance (what a layer-by-layer
// unpack would leave). A surviving hard link whose target a later layer
// removes can't be written in one pass; that is an Error naming both.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "image/entry.hh"
#include "image/pump.hh"

namespace ch::image {

namespace fs = std::filesystem;

struct LayerFile {
    fs::path path;      // the tarball (any compression the tar source detects)
    std::string digest; // for messages: "sha256:..."
};

// strip_top: a tarbomb wrapper directory to remove from every name (as
// UnpackOptions::strip_top), or "". Reads every layer's headers now.
std::unique_ptr<Source> make_layers_source(std::vector<LayerFile> layers,
                                           std::string strip_top = {}, Cancel cancel = nullptr);

// "sha256:1a2b3c4d5e6f" (the algorithm and 12 hex digits), for messages.
std::string short_digest(std::string_view digest);

} // namespace ch::image

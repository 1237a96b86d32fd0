// unpack_image.hh: an OCI image's layers, in order, into one sink, through
// the same unpacking rules as ch-convert, then its metadata (/ch/metadata.json,
// /ch/environment) and what ch-run needs (unpack_init). Used by ch-image
// pull, into storage and straight to a tar or SquashFS file.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "image/entry.hh"
#include "image/metadata.hh"
#include "image/pump.hh"
#include "image/source_layers.hh"

namespace ch::image {

struct UnpackImageRequest {
    std::vector<LayerFile> layers; // lowest first
    Metadata meta;
    bool xattrs = true; // keep user.* extended attributes
    // Feed the sink one merged stream of the surviving entries
    // (source_layers.hh) instead of each layer in turn with whiteouts: for
    // sinks that can only add (tar), and so that a SquashFS file holds no
    // hidden data. A directory sink takes the layers one by one, which
    // resolves whiteouts through symlinked parents too.
    bool merged = false;
    // If set, called before layer i (index into layers) is first opened, and
    // returns once its file is complete: a pull unpacks the first layers
    // while later ones are still being fetched. It throws to abort.
    std::function<void(std::size_t)> wait_for_layer;
};

struct UnpackImageStats {
    PumpStats pump;     // summed over the layers
    UnpackStats rules;  // what the rules did
    std::int64_t mtime; // newest mtime in the layers: what the image's own entries get
};

// Does not commit the sink. Errors name the layer and the entry.
UnpackImageStats unpack_image(const UnpackImageRequest& req, Sink& sink, const std::string& dest,
                              Cancel cancel = nullptr);

} // namespace ch::image

// pump.hh: the entry stream's one loop. Entries come from a Source, pass
// through the unpacking rules, and go into a Sink: ch-convert pumps one
// archive, a pull pumps each layer in turn through the same rules and sink.
// Nothing here knows how any format is laid out.
#pragma once

#include <csignal>
#include <cstdint>
#include <optional>
#include <string>

#include "image/entry.hh"
#include "image/unpack_rules.hh"
#include "util/error.hh"

namespace ch::image {

// Polled between entries and data blocks; set from a signal handler.
using Cancel = const volatile std::sig_atomic_t*;

// Thrown when asked to stop; its message needs no context.
class Interrupted : public Error {
public:
    Interrupted()
        : Error("interrupted") {}
};

// Throws Interrupted if cancel is set.
void check_cancel(Cancel cancel);

struct PumpStats {
    std::uint64_t entries = 0;     // entries read from the source
    std::uint64_t bytes = 0;       // file data copied
    std::int64_t newest_mtime = 0; // of the entries read, for what init_image makes
};

// Every entry of src through rules into sink. Does not commit. Errors from
// the rules get the context "can't unpack SOURCE"; errors from the sink (but
// not from reading the source during add) get "can't write DEST".
PumpStats pump(Source& src, Sink& sink, UnpackRules& rules, const std::string& dest,
               Cancel cancel = nullptr);

// After the last layer: add to sink what rules.init_image() makes.
void pump_init(Sink& sink, UnpackRules& rules, std::int64_t mtime, const std::string& dest);

// Feed src's entries to probe (stopping as soon as it says no), then rewind
// src. Data is skipped, not read. For a layered image, feed every layer to
// the same probe before unpacking any.
void probe_tarbomb(Source& src, TarbombProbe& probe, Cancel cancel = nullptr);

} // namespace ch::image

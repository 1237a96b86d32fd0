// squash_stub.cc: TEMPORARY stand-ins for the SquashFS source and sink, so
// the convert branch links before sink_squash.cc and source_squash.cc are
// merged. Delete this file at that merge.
#include "image/squash.hh"
#include "util/error.hh"

namespace ch::image {

std::unique_ptr<Sink> make_squash_sink(const fs::path&, const SquashOptions&) {
    throw Error("SquashFS support not merged yet", Exit::squash);
}

std::unique_ptr<Source> make_squash_source(const fs::path&) {
    throw Error("SquashFS support not merged yet", Exit::squash);
}

} // namespace ch::image

// convert.hh: ch-convert's work. A conversion is planned first (formats,
// paths, whether an existing output may be replaced), which is all that
// --dry-run does, then run: source -> unpacking rules -> sink (the pump,
// pump.hh), and one rename publishes the result.
#pragma once

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "image/entry.hh"
#include "image/formats.hh"
#include "image/pump.hh"
#include "image/squash.hh"
#include "image/unpack_rules.hh"

namespace ch::image {

namespace fs = std::filesystem;

enum class Format { ch_image, dir, squash, tar };

const char* format_name(Format f); // as on the command line: "ch-image", "dir", "squash", "tar"
std::optional<Format> parse_format(std::string_view s);

// OUTPUT by name (Charliecloud's inference): *.sqfs, *.squash, *.squashfs,
// *.squishy -> squash; *.tar, *.t?z, *.tar.?, *.tar.?? -> tar; /... or ./...
// -> dir; anything else is an image name in storage.
Format infer_output_format(std::string_view out);

// INPUT: the name of an image in storage -> ch-image, as for ch-run, whatever
// the working directory holds; else by content: an existing directory -> dir;
// a file starting with "hsqs" -> squash; another existing file -> tar
// (libarchive decides whether it really is one). Throws Error otherwise.
// storage may be empty, storage_error saying why; only needed for names.
Format detect_input_format(std::string_view in, const fs::path& storage,
                           const std::string& storage_error = {});

struct ConvertRequest {
    std::string in, out;
    std::optional<Format> in_fmt, out_fmt;  // -i, -o: override detection and inference
    std::optional<TarCompression> tar_comp; // -o tar.gz etc.: override the name's
    std::optional<SquashOptions> squash;    // squash output settings (only for squash output)
    bool no_clobber = false;                // refuse any existing output
    bool xattrs = true;                     // keep user.* xattrs
    fs::path storage;                       // empty if it could not be determined:
    std::string storage_error;              // then this says why, for when it is needed
};

struct ConvertPlan {
    Format in_fmt = Format::dir;
    Format out_fmt = Format::dir;
    fs::path in_path;    // file or directory read (a storage image's directory)
    std::string in_desc; // for messages: the path, or "storage image NAME"
    std::string in_ref;  // storage image name, for ch-image input
    fs::path out_path;   // where the output appears
    std::string out_desc;
    std::string out_ref; // storage image name, for ch-image output
    fs::path storage;
    bool replaces = false; // an existing output will be replaced
    bool xattrs = true;
    TarCompression tar_comp = TarCompression::none; // for tar output
    SquashOptions squash;                           // for squash output
};

// Whether an existing OUT may be replaced: a missing path, an empty
// directory, a directory that looks like an image (has bin/, dev/ and usr/,
// or etc/ and ch/), an empty file, or a file whose first bytes are those of
// a SquashFS or (compressed) tar archive. Returns an empty string if yes,
// else the reason why not.
std::string why_not_replace(const fs::path& dest);

// An -o argument: a format's name, or for tar output with a compression not
// taken from OUT's name, tar.gz (or tgz), tar.zst, tar.xz.
struct OutFormat {
    Format format;
    std::optional<TarCompression> tar_comp;
};

std::optional<OutFormat> parse_out_format(std::string_view s);

// Decide everything that can be decided without converting. Throws
// UsageError for bad combinations (same format in and out, an output name
// with no tar compression) and Error for a missing input or an output that
// must not be replaced.
ConvertPlan plan_convert(const ConvertRequest& req);

// One line: what run_convert(plan) would do.
std::string describe(const ConvertPlan& plan);

// Carry out a plan. cancel, if given, is polled (set it from a signal
// handler): a cancelled conversion throws and leaves nothing at the output.
// A tarball is first probed for a wrapping directory (TarbombProbe), and
// unpacking one into a directory, storage or SquashFS ends with
// UnpackRules::init_image (Charliecloud's unpack_init).
PumpStats run_convert(const ConvertPlan& plan, Cancel cancel = nullptr);

} // namespace ch::image

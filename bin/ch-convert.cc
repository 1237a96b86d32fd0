// ch-convert: convert an image between formats (ch-image storage, directory,
// SquashFS, tar). Parse, call lib/image, report.
#include <clocale>
#include <iostream>

#include "cli.hh"
#include "config.h"
#include "image/convert.hh"
#include "image/squash.hh"
#include "storage/layout.hh"
#include "util/error.hh"
#include "util/log.hh"
#include "util/strings.hh"

using namespace ch;
using ch::cli::Arg;

namespace {

// The compressors from the one table (squash.hh) that this build's
// libsquashfs can write.
std::string squash_comp_help() {
    return cat("SquashFS compressor: ", join(image::squash_compressors(), ", "), " (default gzip)");
}

const cli::Spec spec = {
    "ch-convert",
    "[OPTION...] IN OUT",
    "Convert the image IN to OUT. Formats: ch-image (an image in storage, by name), dir (a "
    "directory), squash (a SquashFS file), tar (a tar archive, optionally compressed). IN is an "
    "image in storage if one has that name (./NAME is a file), else detected from its content; "
    "OUT's format is inferred from its name. OUT appears atomically: a failed conversion leaves "
    "nothing behind.",
    {
        {"dry-run", 'n', Arg::none, false, "", "don't convert; print what would be done"},
        {"help", 'h', Arg::none, false, "", "give this help list"},
        {"in-fmt", 'i', Arg::required, false, "FMT",
         "input format (default: an image in storage by that name, else IN's content)"},
        {"no-clobber", 0, Arg::none, false, "", "refuse to replace an existing OUT"},
        {"no-xattrs", 0, Arg::none, false, "", "don't copy extended attributes"},
        {"out-fmt", 'o', Arg::required, false, "FMT",
         "output format: ch-image, dir, squash, tar, tar.gz, tar.zst, tar.xz (default: inferred "
         "from "
         "OUT's name)"},
        {"quiet", 'q', Arg::none, true, "", "print less output (can be repeated)"},
        {"squash-block-size", 0, Arg::required, false, "SIZE",
         "SquashFS block size, a power of two from 4K to 1M (default 128K)"},
        {"squash-comp", 0, Arg::required, false, "NAME", squash_comp_help()},
        {"storage", 's', Arg::required, false, "DIR", "set storage directory for ch-image images"},
        {"tmp", 0, Arg::required, false, "DIR",
         "ignored (accepted for compatibility): output is staged beside OUT"},
        {"verbose", 'v', Arg::none, true, "", "be more verbose (can be repeated)"},
        {"version", 0, Arg::none, false, "", "print version and exit"},
        {"xattrs", 0, Arg::none, false, "", "copy user.* extended attributes (the default)"},
    },
    false,
};

image::Format in_format_option(const cli::Parsed& p) {
    const std::string v = *p.value("in-fmt");
    const auto f = image::parse_format(v);
    if (!f)
        throw UsageError(cat("--in-fmt: unknown format '", printable(v),
                             "' (known: ch-image, dir, squash, tar)"));
    return *f;
}

image::OutFormat out_format_option(const cli::Parsed& p) {
    const std::string v = *p.value("out-fmt");
    const auto f = image::parse_out_format(v);
    if (!f)
        throw UsageError(
            cat("--out-fmt: unknown format '", printable(v),
                "' (known: ch-image, dir, squash, tar, tar.gz, tgz, tar.zst, tar.xz)"));
    return *f;
}

// Checked here, before anything is opened, so that -n checks them too.
std::optional<image::SquashOptions> squash_options(const cli::Parsed& p) {
    const auto comp = p.value("squash-comp");
    const auto size = p.value("squash-block-size");
    if (!comp && !size)
        return std::nullopt;
    image::SquashOptions o;
    if (size) {
        const auto n = image::parse_squash_block_size(*size);
        if (!n)
            throw UsageError(cat("--squash-block-size: '", printable(*size),
                                 "' is not a size (write it as 65536, 64K or 1M)"));
        if (!image::is_squash_block_size(*n))
            throw UsageError(cat("--squash-block-size: invalid block size ", printable(*size), " (",
                                 image::squash_block_sizes(), ")"));
        o.block_size = static_cast<unsigned>(*n);
    }
    if (comp) {
        o.compressor = *comp;
        if (const std::string why = image::squash_options_problem(o); !why.empty())
            throw UsageError(cat("--squash-comp: ", why));
    }
    return o;
}

image::ConvertRequest to_request(const cli::Parsed& p) {
    if (p.positional.size() != 2)
        throw UsageError(p.positional.size() < 2 ? "IN and OUT are required"
                                                 : "too many arguments (need exactly IN and OUT)");
    image::ConvertRequest r;
    r.in = p.positional[0];
    r.out = p.positional[1];
    if (p.has("in-fmt"))
        r.in_fmt = in_format_option(p);
    if (p.has("out-fmt")) {
        const image::OutFormat f = out_format_option(p);
        r.out_fmt = f.format;
        r.tar_comp = f.tar_comp;
    }
    r.squash = squash_options(p);
    r.no_clobber = p.has("no-clobber");
    for (const auto& occ : p.in_order) // the last of --xattrs/--no-xattrs wins
        if (occ.name == "xattrs" || occ.name == "no-xattrs")
            r.xattrs = occ.name == "xattrs";
    try { // only needed for ch-image images, so a problem is reported only then
        const auto storage = storage::storage_dir(p.value("storage"));
        log::verbose("storage: ", storage.path.string(), " (from ", storage.source, ")");
        r.storage = storage.path;
    } catch (const Error& e) {
        r.storage_error = e.what();
    }
    if (const auto tmp = p.value("tmp"))
        log::verbose("ignoring --tmp ", *tmp, ": the output is staged beside OUT");
    return r;
}

} // namespace

int main(int argc, char** argv) {
    return cli::guarded_main("ch-convert", [&]() -> int {
        const cli::Parsed p = cli::parse(spec, argc, argv);
        if (cli::answered_common("ch-convert", spec, p))
            return 0;
        const image::ConvertPlan plan = image::plan_convert(to_request(p));
        if (p.has("dry-run")) {
            std::cout << image::describe(plan) << "\n";
            return 0;
        }
        cli::catch_interrupts();
        // libarchive converts pax names between UTF-8 and the locale's
        // charset; in a UTF-8 locale that is the identity for the UTF-8 names
        // images hold, whatever locale the user runs in.
        std::setlocale(LC_CTYPE, "C.UTF-8");
        image::run_convert(plan, &cli::interrupted);
        return 0;
    });
}

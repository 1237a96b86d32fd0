// ch-fromhost: copy host files (MPI, GPU and other shared libraries) into a
// directory image and run its ldconfig. The work is in lib/fromhost.
#include <iostream>

#include <fcntl.h>
#include <unistd.h>

#include "cli.hh"
#include "config.h"
#include "fromhost/fromhost.hh"
#include "image/image.hh"
#include "image/ldso.hh"
#include "storage/layout.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"
#include "util/privs.hh"

using namespace ch;

namespace {
const cli::Spec spec = {
    "ch-fromhost",
    "[OPTION...] [FILE_OPTION...] IMAGE",
    "Copy host files into the directory image IMAGE (a path or the name of an image in "
    "storage). Shared libraries go to the image's library directory (the first directory its "
    "ld.so.conf lists), other files to the same path or to --dest, and then the image's ldconfig "
    "runs inside it. For read-only and SquashFS images, use injection at run time instead "
    "(ch-run(1), INJECTION).",
    {
        {"cmd", 'c', cli::Arg::required, true, "CMD", "add the files CMD prints, one per line"},
        {"dest", 'd', cli::Arg::required, true, "DIR",
         "put the files named after this option in DIR in the image"},
        {"file", 'f', cli::Arg::required, true, "LIST", "add the files LIST names, one per line"},
        {"help", '?', cli::Arg::none, false, "", "give this help list"},
        {"lib-path", 0, cli::Arg::none, false, "", "print the image's library directory and exit"},
        {"no-ldconfig", 0, cli::Arg::none, false, "", "don't run ldconfig in the image"},
        {"nvidia", 0, cli::Arg::none, false, "",
         "add the host's NVIDIA driver libraries and tools (exit 1 if it has none)"},
        {"path", 'p', cli::Arg::required, true, "FILE", "add FILE"},
        {"quiet", 'q', cli::Arg::none, true, "", "print less output"},
        {"storage", 's', cli::Arg::required, false, "DIR", "set storage directory"},
        {"verbose", 'v', cli::Arg::none, true, "", "be more verbose (each file copied)"},
        {"version", 'V', cli::Arg::none, false, "", "print version and exit"},
    },
};

// The ch-run beside this ch-fromhost (they are installed together), else
// the one in $PATH.
fs::path ch_run_path() {
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec && ::access((self.parent_path() / "ch-run").c_str(), X_OK) == 0)
        return self.parent_path() / "ch-run";
    return "ch-run";
}
} // namespace

int main(int argc, char** argv) {
    return cli::guarded_main("ch-fromhost", [&]() -> int {
        refuse_setuid();
        const cli::Parsed p = cli::parse(spec, argc, argv);
        if (cli::answered_common("ch-fromhost", spec, p))
            return 0;
        if (p.positional.size() != 1)
            throw UsageError(p.positional.empty() ? "no IMAGE given" : "more than one IMAGE given");

        const auto storage = storage::storage_dir(p.value("storage"));
        const image::Image img = image::resolve_image(p.positional[0], storage.path, false);
        if (img.kind == image::Kind::squash)
            fail("can't inject into ", img.ref,
                 ": a SquashFS image is read-only (ch-run --inject binds host files at start)");
        const Fd root = open_at(AT_FDCWD, img.path, O_PATH | O_DIRECTORY);
        const std::string lib_dir = image::image_lib_dir(root.get());
        if (p.has("lib-path")) {
            std::cout << lib_dir << "\n";
            return 0;
        }

        std::vector<fromhost::Item> items;
        std::optional<std::string> dest;
        for (const auto& occ : p.in_order) {
            const std::string v = occ.value.value_or("");
            if (occ.name == "dest")
                dest = v;
            else if (occ.name == "path")
                items.push_back({v, dest, "--path"});
            else if (occ.name == "cmd")
                for (const auto& f : fromhost::command_lines(v))
                    items.push_back({f, dest, cat("--cmd ", quote_name(v))});
            else if (occ.name == "file")
                for (const auto& f : fromhost::file_lines(v))
                    items.push_back({f, dest, cat("--file ", v)});
        }
        if (p.has("nvidia"))
            for (const auto& f : fromhost::nvidia_files())
                items.push_back({f, std::nullopt, "--nvidia"});
        if (items.empty())
            throw UsageError("no files to inject (give --path, --cmd, --file or --nvidia)");

        const auto placed = fromhost::place(items, lib_dir);
        const std::size_t n = fromhost::copy_into(root.get(), img.path, placed);
        const bool any_lib =
            std::any_of(placed.begin(), placed.end(), [](const auto& x) { return x.library; });
        log::info("copied ", n, " files into ", img.path.string(),
                  any_lib ? cat(" (libraries in ", lib_dir, ")") : std::string());
        if (!any_lib || p.has("no-ldconfig"))
            return 0;
        const auto ldconfig = fromhost::image_ldconfig(root.get());
        if (!ldconfig) {
            log::warning("image ", img.path.string(), " has no ldconfig: the libraries are in ",
                         lib_dir, " but not in its ld.so.cache");
            return 0;
        }
        fromhost::run_ldconfig(ch_run_path(), img.path, *ldconfig, p.count("verbose"));
        return 0;
    });
}

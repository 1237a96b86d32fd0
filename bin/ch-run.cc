// ch-run: run a command in a container image. Parse, call lib/run, report.
#include <cstdio>

#include "cli.hh"
#include "config.h"
#include "run/probe.hh"
#include "run/run.hh"
#include "run_cli.hh"
#include "util/error.hh"
#include "util/log.hh"
#include "util/privs.hh"

using namespace ch;

namespace {

int feature(const std::string& f) {
    if (f == "extglob")
        return 0; // glibc's fnmatch has FNM_EXTMATCH
    if (f == "squash")
        return 0;
    if (f == "seccomp")
        return static_cast<int>(Exit::misc);
    // Charliecloud exits 1 for these two when unavailable.
    if (f == "overlayfs")
        return run::probe_overlayfs() ? 1 : 0;
    if (f == "tmpfs-xattrs")
        return run::probe_tmpfs_xattrs() ? 1 : 0;
    fail("unknown feature: ", printable(f));
}

} // namespace

int main(int argc, char** argv) {
    return cli::guarded_main("ch-run", [&]() -> int {
        refuse_setuid(); // before reading argv or the environment
        const cli::Parsed p = cli::parse(cli::run_spec(), argc, argv);
        log::init("ch-run", p.count("verbose") - p.count("quiet"));
        if (p.has("help")) {
            std::fputs(cli::help_text(cli::run_spec()).c_str(), stdout);
            return 0;
        }
        if (p.has("usage")) {
            std::printf("Usage: ch-run %s\n", cli::run_spec().synopsis.c_str());
            return 0;
        }
        if (p.has("version")) {
            std::fputs(CH_VERSION "\n", stderr); // Charliecloud prints the version to stderr
            return 0;
        }
        if (auto f = p.value("feature"))
            return feature(*f);
        run::run(cli::to_run_options(p));
    });
}

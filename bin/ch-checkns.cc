// ch-checkns: say whether this kernel lets this user do what ch-run needs,
// and precisely what is missing if not.
#include <iostream>

#include "cli.hh"
#include "config.h"
#include "run/probe.hh"
#include "util/error.hh"
#include "util/log.hh"
#include "util/privs.hh"

using namespace ch;

namespace {
const cli::Spec spec = {
    "ch-checkns",
    "[OPTION...]",
    "Check that this kernel lets an unprivileged user do what ch-run needs: user and mount "
    "namespaces, bind mounts and pivot_root; overlayfs for -W; FUSE for SquashFS images. Prints "
    "one line per check and exits 0 when all pass.",
    {
        {"help", '?', cli::Arg::none, false, "", "give this help list"},
        {"verbose", 'v', cli::Arg::none, true, "", "be more verbose"},
        {"version", 'V', cli::Arg::none, false, "", "print version and exit"},
    },
};
} // namespace

int main(int argc, char** argv) {
    return cli::guarded_main("ch-checkns", [&]() -> int {
        refuse_setuid();
        const cli::Parsed p = cli::parse(spec, argc, argv);
        if (cli::answered_common("ch-checkns", spec, p))
            return 0;
        if (!p.positional.empty())
            throw UsageError("ch-checkns takes no arguments");
        int failed = 0;
        for (const auto& c : run::check_kernel()) {
            std::cout << (c.ok ? "ok      " : "missing ") << c.name;
            if (!c.ok)
                std::cout << ": " << c.detail;
            std::cout << "\n";
            failed += c.ok ? 0 : 1;
        }
        std::cout << (failed == 0 ? "ok: ch-run has everything it needs\n"
                                  : "missing: see above\n");
        return failed == 0 ? 0 : 1;
    });
}

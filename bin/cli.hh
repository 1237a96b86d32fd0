// cli.hh: command-line plumbing shared by the tools. One option table per
// tool is the truth: it drives the parse, --help, and the docs-sane check
// against the man page.
//
// Which parser each tool uses: every tool (ch-run, ch-convert, ch-checkns)
// parses with parse() below, one table-driven pass, and no tool uses Argh.
// Argh 1.3.2 can't be the parser for any of them: a repeated option keeps
// only its first value (-b), "--" does not end options, a value that starts
// with "-" is lost (--unset-env -FOO), an empty argument aborts on an
// assert, a lone "-" is taken for an option, and its number test builds an
// istringstream per argument, whose first use sets up libstdc++'s locales
// (3% of a ch-run start). Working around all that left Argh re-parsing what
// this pass had already decided, a second parse that could only disagree, so
// it was dropped (STYLE.md §7: Argh does real work or is not used).
#pragma once

#include <csignal>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ch::cli {

enum class Arg { none, required, optional };

struct Option {
    std::string long_name; // without "--"
    char short_name = 0;   // 0 if none
    Arg arg = Arg::none;
    bool repeatable = false; // values (or, for flags, the count) are all kept
    std::string metavar;     // e.g. "SRC[:DST]"
    std::string help;
    bool hidden = false; // internal; not in --help or the man page
};

struct Spec {
    std::string program;
    std::string synopsis;    // after the program name: "[OPTION...] IMAGE -- COMMAND [ARG...]"
    std::string description; // one paragraph
    std::vector<Option> options;
    bool command_after_dashdash = false; // everything after the first "--" is opaque
};

// One occurrence of an option, in command-line order.
struct Occurrence {
    std::string name; // long name
    std::optional<std::string> value;
};

struct Parsed {
    std::vector<Occurrence> in_order;                       // every option, in order
    std::map<std::string, std::vector<std::string>> values; // long name -> values given
    std::map<std::string, int> counts;                      // long name -> times given
    std::vector<std::string> positional;                    // before "--" (or all, if no command)
    std::vector<std::string> command;                       // after "--"
    bool saw_dashdash = false;

    bool has(const std::string& name) const { return counts.count(name) > 0; }

    int count(const std::string& name) const;
    // Last value given for a single-valued option.
    std::optional<std::string> value(const std::string& name) const;
};

// Short options, bundles (-vvv), attached values (-bSRC, --bind=SRC), values
// that start with "-", optional arguments (attached only: --set-env=FILE,
// -W4G) and "--" as getopt/argp treat them. Throws UsageError for unknown
// options, missing values and empty arguments. A single-valued option given
// twice keeps its last value, as argp does.
Parsed parse(const Spec& spec, int argc, const char* const* argv);

std::string help_text(const Spec& spec);

// The start the tools share: -v and -q counted into log::init (both given is
// a UsageError), then --help (to stdout) or --version (to stderr, where
// Charliecloud prints it). True when one of those was answered and the tool
// exits 0.
bool answered_common(const std::string& program, const Spec& spec, const Parsed& p);

// Long work that stages its output (ch-convert, ch-image pull) polls this
// flag: from catch_interrupts() on, SIGINT, SIGTERM and SIGHUP set it, and
// the work ends through an exception, so the staging is removed on the way
// out. (SIGKILL leaves it; the next run beside the same output sweeps it.)
extern volatile std::sig_atomic_t interrupted;
void catch_interrupts();

// Run body; turn exceptions into "PROGRAM: message" on stderr and the
// error's exit code. Usage errors add "see 'PROGRAM --help'".
int guarded_main(const std::string& program, const std::function<int()>& body);

} // namespace ch::cli

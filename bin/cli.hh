// cli.hh: command-line plumbing shared by the tools. One option table per
// tool drives parsing, --help, and the docs-sane check against the man page.
// Argh does the final parse; this layer works around its pitfalls (repeated
// options keep only the first value, "--" does not end options, values that
// start with "-" are lost, an empty argument aborts).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ch::cli {

enum class Arg { none, required, optional };

struct Option {
    std::string long_name;  // without "--"
    char short_name = 0;    // 0 if none
    Arg arg = Arg::none;
    bool repeatable = false; // values (or, for flags, the count) are all kept
    std::string metavar;     // e.g. "SRC[:DST]"
    std::string help;
    bool hidden = false;     // internal; not in --help or the man page
};

struct Spec {
    std::string program;
    std::string synopsis;    // after the program name: "[OPTION...] IMAGE -- COMMAND [ARG...]"
    std::string description; // one paragraph
    std::vector<Option> options;
    bool command_after_dashdash = false; // everything after the first "--" is opaque
    // Argh parses pass 1's result again and must agree with it. Off for
    // ch-run only: Argh's number test builds an istringstream for every
    // argument, and that first stream initialises libstdc++'s locales,
    // 0.08 ms (3%) of every start of a container.
    bool argh_check = true;
};

// One occurrence of an option, in command-line order.
struct Occurrence {
    std::string name; // long name
    std::optional<std::string> value;
};

struct Parsed {
    std::vector<Occurrence> in_order;          // every option, in order
    std::map<std::string, std::vector<std::string>> values; // long name -> values given
    std::map<std::string, int> counts;         // long name -> times given
    std::vector<std::string> positional;       // before "--" (or all, if no command)
    std::vector<std::string> command;          // after "--"
    bool saw_dashdash = false;

    bool has(const std::string& name) const { return counts.count(name) > 0; }
    int count(const std::string& name) const;
    // Last value given for a single-valued option.
    std::optional<std::string> value(const std::string& name) const;
};

// Throws UsageError for unknown options, missing values and empty arguments.
// A single-valued option given twice keeps its last value, as argp does.
Parsed parse(const Spec& spec, int argc, const char* const* argv);

std::string help_text(const Spec& spec);

// Run body; turn exceptions into "PROGRAM: message" on stderr and the
// error's exit code. Usage errors add "see 'PROGRAM --help'".
int guarded_main(const std::string& program, const std::function<int()>& body);

} // namespace ch::cli

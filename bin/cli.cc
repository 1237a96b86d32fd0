// cli.cc: see cli.hh.
#include "cli.hh"

#include <cstdio>
#include <exception>

#include <signal.h>
#include <unistd.h>

#include "config.h"
#include "util/error.hh"
#include "util/log.hh"

namespace ch::cli {

int Parsed::count(const std::string& name) const {
    const auto it = counts.find(name);
    return it == counts.end() ? 0 : it->second;
}

std::optional<std::string> Parsed::value(const std::string& name) const {
    const auto it = values.find(name);
    if (it == values.end() || it->second.empty())
        return std::nullopt;
    return it->second.back();
}

namespace {

const Option* find_long(const Spec& spec, std::string_view name) {
    for (const auto& o : spec.options)
        if (o.long_name == name)
            return &o;
    return nullptr;
}

const Option* find_short(const Spec& spec, char c) {
    for (const auto& o : spec.options)
        if (o.short_name != 0 && o.short_name == c)
            return &o;
    return nullptr;
}

// The one pass over argv: options in order, positionals, the command.
struct Normalised {
    std::vector<std::string> positional;
    std::vector<Occurrence> in_order;
    std::vector<std::string> command;
    bool saw_dashdash = false;
};

void take(Normalised& n, const Option& o, std::optional<std::string> value) {
    if (value && value->empty())
        throw UsageError(cat("option --", o.long_name, " needs a non-empty argument"));
    n.in_order.push_back({o.long_name, std::move(value)});
}

Normalised normalise(const Spec& spec, int argc, const char* const* argv) {
    Normalised n;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a.empty())
            throw UsageError(cat("argument ", i, " is empty"));
        if (a == "--") {
            n.saw_dashdash = true;
            for (int j = i + 1; j < argc; j++)
                n.command.emplace_back(argv[j]);
            break;
        }
        if (a.size() > 2 && a.starts_with("--")) {
            const std::size_t eq = a.find('=');
            const std::string name =
                a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
            const Option* o = find_long(spec, name);
            if (o == nullptr)
                throw UsageError(cat("unrecognized option '--", name, "'"));
            if (eq != std::string::npos) {
                if (o->arg == Arg::none)
                    throw UsageError(cat("option '--", name, "' doesn't allow an argument"));
                take(n, *o, a.substr(eq + 1));
            } else if (o->arg == Arg::required) {
                if (i + 1 >= argc)
                    throw UsageError(cat("option '--", name, "' requires an argument"));
                const std::string v = argv[++i];
                if (v.empty())
                    throw UsageError(cat("option --", name, " needs a non-empty argument"));
                take(n, *o, v);
            } else {
                take(n, *o, std::nullopt);
            }
            continue;
        }
        if (a.size() > 1 && a[0] == '-') {
            for (std::size_t k = 1; k < a.size(); k++) {
                const Option* o = find_short(spec, a[k]);
                if (o == nullptr)
                    throw UsageError(cat("invalid option -- '", a[k], "'"));
                if (o->arg == Arg::none) {
                    take(n, *o, std::nullopt);
                    continue;
                }
                std::string rest = a.substr(k + 1);
                if (o->arg == Arg::optional) {
                    take(n, *o, rest.empty() ? std::nullopt : std::optional<std::string>(rest));
                } else if (!rest.empty()) {
                    take(n, *o, rest);
                } else {
                    if (i + 1 >= argc)
                        throw UsageError(cat("option requires an argument -- '", a[k], "'"));
                    const std::string v = argv[++i];
                    if (v.empty())
                        throw UsageError(cat("option -", a[k], " needs a non-empty argument"));
                    take(n, *o, v);
                }
                break;
            }
            continue;
        }
        n.positional.push_back(a);
    }
    return n;
}

} // namespace

Parsed parse(const Spec& spec, int argc, const char* const* argv) {
    Normalised n = normalise(spec, argc, argv);
    Parsed p;
    p.in_order = n.in_order;
    p.command = std::move(n.command);
    p.saw_dashdash = n.saw_dashdash;
    for (const auto& occ : n.in_order) {
        // A single-valued option given twice keeps the last value, as argp does.
        p.counts[occ.name]++;
        if (occ.value)
            p.values[occ.name].push_back(*occ.value);
    }

    p.positional = std::move(n.positional);
    return p;
}

bool answered_common(const std::string& program, const Spec& spec, const Parsed& p) {
    const int verbose = p.count("verbose");
    const int quiet = p.count("quiet");
    if (verbose > 0 && quiet > 0)
        throw UsageError("-q and -v are incompatible");
    log::init(program, verbose - quiet);
    if (p.has("help")) {
        std::fputs(help_text(spec).c_str(), stdout);
        return true;
    }
    if (p.has("version")) {
        std::fputs(CH_VERSION "\n", stderr);
        return true;
    }
    return false;
}

std::string help_text(const Spec& spec) {
    std::string out = cat("Usage: ", spec.program, " ", spec.synopsis, "\n\n", spec.description,
                          "\n\nOptions:\n");
    for (const auto& o : spec.options) {
        if (o.hidden)
            continue;
        std::string left = o.short_name ? cat("  -", o.short_name, ", ") : std::string("      ");
        left += "--" + o.long_name;
        if (o.arg == Arg::required)
            left += (o.short_name ? " " : "=") + o.metavar;
        else if (o.arg == Arg::optional)
            left += "[=" + o.metavar + "]";
        if (left.size() < 30)
            left.resize(30, ' ');
        else
            left += "\n" + std::string(30, ' ');
        out += left + o.help + "\n";
    }
    return out;
}

volatile std::sig_atomic_t interrupted = 0;

namespace {
void on_interrupt(int) {
    interrupted = 1;
}
} // namespace

void catch_interrupts() {
    struct sigaction sa {};

    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    for (const int sig : {SIGINT, SIGTERM, SIGHUP})
        if (::sigaction(sig, &sa, nullptr) != 0)
            throw_errno("can't install a signal handler");
}

int guarded_main(const std::string& program, const std::function<int()>& body) {
    log::init(program, log::verbosity());
    try {
        const int rc = body();
        log::reprint_warnings();
        return rc;
    } catch (const UsageError& e) {
        log::error(e.what());
        log::error("see '", program, " --help'");
        return static_cast<int>(e.exit_code());
    } catch (const Error& e) {
        log::error(e.what());
        log::reprint_warnings();
        return static_cast<int>(e.exit_code());
    } catch (const std::exception& e) {
        log::error(e.what());
        return static_cast<int>(Exit::misc);
    }
}

} // namespace ch::cli

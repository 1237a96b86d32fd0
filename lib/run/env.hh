// env.hh: the container's environment (pure). Order, from COMPAT.md: HOME,
// PATH fix-up, unset TMPDIR, then the --set-env/--unset-env deltas in
// command-line order, then CH_RUNNING last so nothing can remove it.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "run/options.hh"

namespace ch::run {

using EnvVars = std::vector<std::pair<std::string, std::string>>;

// Parse "KEY=VALUE" lines (sep '\n') or records (sep '\0'). Blank records are
// skipped; one pair of enclosing single quotes is stripped. what names the
// source in errors ("can't parse /x/env line 3: ...").
EnvVars parse_env_text(std::string_view text, char sep, std::string_view what);
std::pair<std::string, std::string> parse_env_assignment(std::string_view s, std::string_view what);

// Expand items of a ':'-separated value that are exactly $NAME, using env;
// unset or empty ones are dropped with their delimiter.
std::string expand_value(std::string_view value, const EnvVars& env);

struct EnvInputs {
    std::string home;             // what HOME becomes
    EnvVars site_set;             // run.env.set: before the command line's, so those win
    std::vector<EnvDelta> deltas; // image_file deltas already turned into set deltas
    bool no_expand = false;
    std::vector<std::string> pass; // run.env.pass: NAME or PREFIX*, added to launcher_env()
};

// What MPI launchers and batch systems hand their processes (SLURM_*,
// PMIX_*, PMI_*, OMPI_*, PRTE_*): host variables matching these, or the
// site's run.env.pass, survive --unset-env and --set-env of the image's
// environment (unless set to another value), or a rank could not find its
// launcher.
const std::vector<std::string>& launcher_env();

// Order: host, HOME, PATH fix-up, unset TMPDIR, site_set, deltas, the
// launcher's and the site's passed variables restored, CH_RUNNING.
// host: the environment ch-run was started with, as KEY=VALUE strings.
// Warnings (PATH unset) go to log.
EnvVars build_environment(const std::vector<std::string>& host, const EnvInputs& in);

// PATH rule: append ":/bin" unless PATH starts with "/bin" or contains ":/bin".
std::string fix_path(const std::string& path);

constexpr const char* ch_running_value = "Weird Al Yankovic";

} // namespace ch::run

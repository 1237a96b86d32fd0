// site.hh: ch-run's part of the site and user configuration
// (lib/util/config): run.binds, run.env.set, run.env.pass and
// run.join-timeout. The command line wins over $CH_JOIN_TIMEOUT, which wins
// over the user's file, which wins over the site's; lists (binds, pass) add
// up, the site's first. -v says where each setting came from.
#pragma once

#include "run/options.hh"
#include "util/config.hh"

namespace ch::run {

// Fill opts.site_bind, site_env_set, site_env_pass and, unless --join-timeout
// was given, join_timeout. Throws Error at FILE:LINE:COL for a malformed
// entry (a bind that is neither "SRC[:DST]" nor {source, target, optional}).
void apply_site_config(const config::Config& cfg, RunOptions& opts);

} // namespace ch::run

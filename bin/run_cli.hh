// run_cli.hh: ch-run's command line: its option table (which also makes
// --help and is checked against the man page) and its translation into
// run::RunOptions. Apart from main so that unit tests can cover it.
#pragma once

#include "cli.hh"
#include "run/options.hh"

namespace ch::cli {

const Spec& run_spec();

// Throws UsageError for bad values and impossible combinations.
run::RunOptions to_run_options(const Parsed& p);

} // namespace ch::cli

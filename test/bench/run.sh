#!/bin/bash
# run.sh [NAME...]: the benchmarks, run by `make bench`. With no NAME, all of
# them in order; otherwise test/bench/NAME.sh for each NAME given.
#
# How to run:
#   make bench                      build, then every benchmark
#   test/bench/run.sh startup       one benchmark (after make)
#   CH_BENCH_ROUNDS=1000 make bench more rounds (default 300, plus 20 warm-up)
# As root, missing packages (install-deps.sh profile "bench": charliecloud,
# charliecloud-runtime, squashfs-tools, hyperfine, time) are installed, and each
# benchmark runs twice: as root, then as the unprivileged CH_BENCH_USER
# (default chtest, created if missing). As another user, missing packages are
# named and run.sh exits 1.
#
# How to read it: each benchmark prints a block per user. Times are per run,
# in ms, median with p10 and p90 over all rounds; "cpu" is user+system time
# of the run (from wait4), which other load on the machine disturbs far less
# than wall time. The commands compared run round-robin (A B C A B C ...), and
# ratios and differences are taken per round, then summarised the same way, so
# a noisy machine slows both sides alike. PASS/MISS compares the median with
# the project's goal; it is information, not a test: the exit status is 0
# unless a benchmark failed to run. The summary at the end repeats the
# verdicts, one line each.
#
# Adding a benchmark: write test/bench/NAME.sh (source lib.sh, call
# bench_init, print blocks with bench_header, record one line per result with
# bench_summary, exit non-zero only if something failed to run) and add NAME
# to the list below.
set -euo pipefail
cd "$(dirname "$0")/../.."

benchmarks=(startup)
(($# > 0)) && benchmarks=("$@")
for name in "${benchmarks[@]}"; do
    [[ -f test/bench/$name.sh ]] || { echo "run.sh: no such benchmark: $name" >&2; exit 2; }
done

test/setup/install-deps.sh bench || exit 1

# shellcheck source=test/bench/lib.sh
source test/bench/lib.sh
bench_init
echo "benchmarks: ${benchmarks[*]}; work area $CH_BENCH_DIR; $(uname -r), $(nproc) CPUs"

failed=()
for name in "${benchmarks[@]}"; do
    bash "test/bench/$name.sh" || failed+=("$name")
done

bench_header summary
[[ -f $CH_BENCH_DIR/summary ]] && cat "$CH_BENCH_DIR/summary"
if ((${#failed[@]} > 0)); then
    echo "failed to run: ${failed[*]}"
    exit 1
fi

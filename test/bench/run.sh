#!/bin/bash
# run.sh [NAME...]: the benchmarks, run by `make bench`. With no NAME, all of
# them in order; otherwise test/bench/NAME.sh for each NAME given:
#   startup    ch-run DIR -- /bin/true, ours vs Charliecloud 0.31 (busybox image)
#   squashfs   dir -> SquashFS, our ch-convert vs mksquashfs, every compressor
#   convert    tar.gz -> dir, our ch-convert vs Charliecloud 0.31's
#   squashrun  ch-run IMG.sqfs -- /bin/true, ours vs Charliecloud 0.31
#   readers    16 concurrent ch-run IMG.sqfs -- cat BIGFILE, ours vs Charliecloud
#   pull       ch-image pull from a local registry, ours vs Charliecloud 0.31
#              and skopeo+umoci; registry -> SquashFS; a second pull (its own
#              image, test/integration/fixtures/registry.sh, cached in
#              /var/tmp/ch-test-cache: the first run builds it, ~3 minutes)
#   fanout     srun -n 16/64 ch-run --join IMG -- /bin/true | sleep 0.3, ours vs
#              Charliecloud vs plain srun (a one-node Slurm started as root)
#   compute    an MPI kernel in the container vs on the host, under srun --mpi=pmix
#   inject     ch-run --inject (50 host libraries) vs the same start without it
# All but startup share one fixture (fixture.sh): Debian minbase plus many
# small files, ~300 MiB, built once per run on /dev/shm. The first run as
# root debootstraps minbase (a minute, with network) and caches it in
# /var/tmp/ch-bench-cache; later runs need neither.
#
# How to run:
#   make bench                      build, then every benchmark (~12 minutes)
#   test/bench/run.sh convert       one benchmark (after make)
#   CH_BENCH_ROUNDS=1000 make bench more start-up rounds (default 300, plus 20
#                                   warm-up); each script's header names its own
#                                   CH_BENCH_*_ROUNDS
# Missing packages (install-deps.sh profile "bench": charliecloud,
# charliecloud-runtime, squashfs-tools, hyperfine, time, debootstrap) are
# named and run.sh exits 1; as root with CH_INSTALL_DEPS=yes they are
# installed. As root, start-up, squashrun and readers run twice: as root, then
# as the unprivileged CH_BENCH_USER (default chtest, created if missing); the
# conversions run once, as that user, as people convert images.
#
# How to read it: each benchmark prints a block per user. Times are per run,
# in ms unless a column says s, median with p10 and p90 over all rounds (or
# best and median for the few long runs); "cpu" is user+system time of every
# process of the run, including any it left behind such as a FUSE server
# (timeit.c reaps them), which other load on the machine disturbs far less
# than wall time. The commands compared run round-robin, each round in the
# reverse order of the last (A B C C B A ...: what one run leaves the kernel
# to do slows the next, timeit.c says how much), and ratios and differences
# are taken per round, then summarised the same way, so a noisy machine slows
# both sides alike. PASS/MISS compares the median with the project's goal; it
# is information, not a test: the exit status is 0 unless a benchmark failed
# to run. The summary at the end repeats the verdicts, one line each.
#
# Adding a benchmark: write test/bench/NAME.sh (source lib.sh, call
# bench_init, and fixture.sh's bench_fixture if it needs the shared image;
# print blocks with bench_header, record one line per result with
# bench_summary, exit non-zero only if something failed to run) and add NAME
# to the list below. lib.sh, fixture.sh and slurm-setup.sh are sourced, not
# benchmarks.
set -euo pipefail
cd "$(dirname "$0")/../.."

benchmarks=(startup squashfs convert squashrun readers pull fanout compute inject)
(($# > 0)) && benchmarks=("$@")
for name in "${benchmarks[@]}"; do
    [[ -f test/bench/$name.sh && $name != lib && $name != fixture && $name != slurm-setup ]] \
        || { echo "run.sh: no such benchmark: $name" >&2; exit 2; }
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

#!/bin/bash
# compute.sh: does a container slow an MPI code down? The kernel of
# mpi_compute.c (Jacobi stencil plus an allreduce per iteration), compiled
# once with the host's mpicc, runs as 2 ranks (one per core) through Slurm's
# PMIx:
#   host        srun --mpi=pmix -n 2 ./mpi_compute
#   container   srun --mpi=pmix -n 2 ch-run --join IMG -- ./mpi_compute
# with IMG the MPI test image (Debian 12's Open MPI, the host's version) as a
# directory and as SquashFS. The binary is the same file in both: it lives in
# the work area on /dev/shm, which the container sees through its /dev bind,
# so only the environment around it differs (libraries from the image, the
# namespaces, FUSE for SquashFS). The time is the kernel's own (rank 0 prints
# the slowest rank's, start-up excluded); every run must print the same
# residual. Round-robin, CH_BENCH_COMPUTE_ROUNDS rounds (default 5) after one
# warm-up, as CH_BENCH_USER when root. Printed, for the kernel's wall time
# and for its CPU time (the slowest rank's; much less disturbed by other
# load): best, median, container/host best over best and the median of
# per-round ratios.
# Goal (informational): container / host <= 1.02 (best of).
#
# Environment: CH_BENCH_COMPUTE_ROUNDS, CH_BENCH_COMPUTE_ARGS (the kernel's
# N and ITERS, default "1024 200"), CH_BENCH_SLURM_CONF, and lib.sh's.
set -euo pipefail
# shellcheck source=test/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
# shellcheck source=test/bench/slurm-setup.sh
source "$bench_top/test/bench/slurm-setup.sh"

goal=1.02
rounds=${CH_BENCH_COMPUTE_ROUNDS:-5}
args=${CH_BENCH_COMPUTE_ARGS:-1024 200}

bench_header "compute: an MPI kernel in the container vs on the host"
if ! bench_slurm; then
    bench_note "no Slurm cluster: run as root (with slurm-wlm and munge) or set CH_BENCH_SLURM_CONF; skipped"
    bench_summary "compute: skipped (no Slurm)"
    exit 0
fi
command -v mpicc >/dev/null || bench_die "mpicc not found (Debian: libopenmpi-dev)"
bench_mpi_image || bench_die "no MPI image (fixtures/mpi-image.sh: mmdebstrap and Debian's mirror)"
bench_ch_runs
user=$bench_slurm_user
bench_fuse_open
kernel=$CH_BENCH_DIR/bin/mpi_compute
mpicc -O2 -Wall -Wextra -Werror -o "$kernel" "$bench_top/test/bench/mpi_compute.c" \
    || bench_die "can't compile test/bench/mpi_compute.c"
chmod 0755 "$kernel"
mnt=$CH_BENCH_DIR/mnt.compute
mkdir -p "$mnt"
chown "$user" "$mnt"
join=(--join)
bench_has_join "$ours" || {
    bench_note "this ch-run has no --join: each rank in its own container"
    join=()
}
echo "  as $user; kernel $args; $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

out=$CH_BENCH_DIR/compute.tsv
: >"$out"
for r in $(seq 0 "$rounds"); do
    for variant in host dir sqfs; do
        case $variant in
            host) cmd=("$kernel") ;;
            dir) cmd=("$ours" "${join[@]}" "$mpi_dir" -- "$kernel") ;;
            sqfs) cmd=("$ours" "${join[@]}" -m "$mnt" "$mpi_sqfs" -- "$kernel") ;;
        esac
        # shellcheck disable=SC2086 # args: N and ITERS
        line=$(bench_srun_as "$user" srun --mpi=pmix -n 2 "${cmd[@]}" $args 2>"$CH_BENCH_DIR/compute.err") \
            || bench_die "$variant failed: $(head -n 5 "$CH_BENCH_DIR/compute.err")"
        [[ ! -s $CH_BENCH_DIR/compute.err ]] \
            || bench_note "$variant printed on stderr: $(head -n 2 "$CH_BENCH_DIR/compute.err" | tr '\n' ' ')"
        read -r _ secs _ residual _ cpu <<<"$line"
        echo "$variant $r $secs $residual $cpu" >>"$out"
    done
done

residuals=$(awk '{ print $4 }' "$out" | sort -u | wc -l)
((residuals == 1)) || bench_note "the runs disagree on the residual: $(awk '{ print $4 }' "$out" | sort -u | tr '\n' ' ')"
# table MEASURE COLUMN: best, median and ratios to the host of one column.
table() {
    local label=$1 col=$2 host_best best med ratio rmed
    host_best=$(awk -v c="$col" '$1 == "host" && $2 > 0 { print $c }' "$out" | bench_min)
    bench_fmt '  %-10s %8s %8s %9s %9s\n' "$label" best median "best/host" "med r/host"
    for variant in host dir sqfs; do
        best=$(awk -v n="$variant" -v c="$col" '$1 == n && $2 > 0 { print $c }' "$out" | bench_min)
        med=$(awk -v n="$variant" -v c="$col" '$1 == n && $2 > 0 { print $c }' "$out" | bench_median)
        ratio=$(bench_div "$best" "$host_best")
        rmed=$(awk -v n="$variant" -v c="$col" '$2 > 0 && $1 == "host" { h[$2] = $c } $2 > 0 && $1 == n { v[$2] = $c }
                END { for (r in v) if (r in h) print v[r] / h[r] }' "$out" | bench_median)
        bench_fmt '  %-10s %8.3f %8.3f %9.3f %9.3f\n' "$variant" "$best" "$med" "$ratio" "$rmed"
        [[ $variant == host ]] && continue
        bench_summary "compute $variant ($label): $(bench_fmt '%.3f' "$ratio") of host (best of $rounds; goal <= $goal): $(bench_verdict "$ratio" "$goal")"
    done
}
table "wall s" 3
table "cpu s" 5
echo "  load after: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/bin/bash
# fanout.sh: how long a Slurm job step takes to start N ranks in containers on
# this node, against the same N plain processes under srun and against
# Charliecloud 0.31's ch-run. For N = 16 and 64, and for the commands
# /bin/true (pure start and end) and `sleep 0.3` (ranks that overlap, as real
# ones do), each round times one `srun -n N` of:
#   plain           srun -n N CMD                      (the floor)
#   ours-dir        srun -n N ch-run --join DIR -- CMD
#   ours-sqfs       srun -n N ch-run --join IMG.sqfs -- CMD
#   ours-sqfs-nojoin      the same without --join (one FUSE mount per rank)
#   cc-dir, cc-sqfs, cc-sqfs-nojoin   the same with Charliecloud 0.31
# The image is the MPI test image (Debian 12 with Open MPI,
# fixtures/mpi-image.sh: dynamically linked /bin/true and sleep, as real
# applications are). The commands of one (N, CMD) group run round-robin,
# every other round in reverse order, CH_BENCH_FANOUT_ROUNDS rounds (default
# 5) after one warm-up round, as the unprivileged CH_BENCH_USER (as root; the
# daemons are root's). A run that fails (Charliecloud's --join loses a race
# when ranks exit at once) is counted and left out.
#
# Printed per group: best and median wall time per command (s), and the ratio
# to plain: best over best, and the median of per-round ratios (a noisy
# machine slows both sides of one round alike). Goal (informational):
# ours --join / plain <= 1.15, on the best-of ratio. Issue 11 quotes, from an
# earlier machine, Charliecloud at 1.05 s without and 0.58 s with --join
# for 16 SquashFS ranks of sleep 0.3, against 0.40 s plain.
#
# Environment: CH_BENCH_FANOUT_ROUNDS, CH_BENCH_FANOUT_SIZES (default "16 64"),
# CH_BENCH_SLURM_CONF (use that cluster instead of starting one; required
# without root), and lib.sh's.
set -euo pipefail
# shellcheck source=test/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
# shellcheck source=test/bench/slurm-setup.sh
source "$bench_top/test/bench/slurm-setup.sh"

goal=1.15
rounds=${CH_BENCH_FANOUT_ROUNDS:-5}
read -r -a sizes <<<"${CH_BENCH_FANOUT_SIZES:-16 64}"

bench_header "fanout: srun -n N ch-run --join IMG -- CMD vs plain srun vs Charliecloud"
if ! bench_slurm; then
    bench_note "no Slurm cluster: run as root (with slurm-wlm and munge) or set CH_BENCH_SLURM_CONF; skipped"
    bench_summary "fanout: skipped (no Slurm)"
    exit 0
fi
bench_mpi_image || bench_die "no MPI image (fixtures/mpi-image.sh: mmdebstrap and Debian's mirror)"
bench_ch_runs
user=$bench_slurm_user
bench_fuse_open
mnt_ours=$CH_BENCH_DIR/mnt.ours
mnt_cc=$CH_BENCH_DIR/mnt.cc
work=$CH_BENCH_DIR/fanout   # the user's: error logs of the runs
mkdir -p "$mnt_ours" "$mnt_cc" "$work"
chown "$user" "$mnt_ours" "$mnt_cc" "$work"
ours_join=(--join)
bench_has_join "$ours" || {
    bench_note "this ch-run has no --join: 'ours' runs without it"
    ours_join=()
}
echo "  as $user; SLURM_CONF=$SLURM_CONF; ours: $ours; peer: $peer_version"
echo "  $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# One group: a generated script, run as the user inside one allocation
# (salloc -n N), times each command per round with bash's EPOCHREALTIME and
# writes "NAME ROUND SECONDS STATUS". Each command is a job step, as in a
# batch script: no scheduling in the time, and every step its own
# SLURM_STEP_ID (Charliecloud's default --join tag); --overlap, so a step
# doesn't wait for the last one's CPUs to be released. Charliecloud leaves its
# semaphore and shared memory behind when a join fails; they are removed
# after each of its runs, so one failure doesn't fail every later step.
run_group() { # run_group N CMD... -> prints the result file's path
    local n=$1 script out
    shift
    local cmd="$*"
    script=$CH_BENCH_DIR/fanout-$n-${1##*/}.sh
    out=$CH_BENCH_DIR/fanout-$n-${1##*/}.tsv
    {
        echo 'set -u'
        echo "cd $work"
        echo 'step=0'
        echo 'run() { local name=$1 r=$2 t0 t1 rc; shift 2; t0=$EPOCHREALTIME; rc=0'
        echo '  "$@" >/dev/null 2>>"$name.err" || rc=$?; t1=$EPOCHREALTIME'
        echo '  [[ $name != cc-* ]] || rm -f "/dev/shm/ch-run_shm-$step" "/dev/shm/sem.ch-run_sem-$step"'
        echo '  step=$((step + 1))'
        echo '  echo "$name $r $(awk -v a="$t0" -v b="$t1" "BEGIN{printf \"%.6f\", b-a}") $rc"; }'
        local runs=(
            "run plain \$r srun --overlap -n $n $cmd"
            "run ours-dir \$r srun --overlap -n $n $ours ${ours_join[*]} $mpi_dir -- $cmd"
            "run ours-sqfs \$r srun --overlap -n $n $ours ${ours_join[*]} -m $mnt_ours $mpi_sqfs -- $cmd"
            "run ours-sqfs-nojoin \$r srun --overlap -n $n $ours -m $mnt_ours $mpi_sqfs -- $cmd"
            "run cc-dir \$r srun --overlap -n $n $peer --join $mpi_dir -- $cmd"
            "run cc-sqfs \$r srun --overlap -n $n $peer --join -m $mnt_cc $mpi_sqfs -- $cmd"
            "run cc-sqfs-nojoin \$r srun --overlap -n $n $peer -m $mnt_cc $mpi_sqfs -- $cmd"
        )
        local i
        # Every other round in reverse, as timeit.c does: a step's teardown
        # slows the next one, and in a fixed order the same command would
        # always pay for the same other.
        echo "for r in \$(seq 0 $rounds); do"
        echo "  if ((r % 2 == 0)); then"
        for ((i = 0; i < ${#runs[@]}; i++)); do echo "    ${runs[i]}"; done
        echo "  else"
        for ((i = ${#runs[@]} - 1; i >= 0; i--)); do echo "    ${runs[i]}"; done
        echo "  fi"
        echo "done"
    } >"$script"
    chmod 0644 "$script"
    # Round 0 is the warm-up; the file keeps it, the summary drops it.
    bench_srun_as "$user" salloc --quiet -n "$n" bash "$script" >"$out"
    echo "$out"
}

names=(plain ours-dir ours-sqfs ours-sqfs-nojoin cc-dir cc-sqfs cc-sqfs-nojoin)
report() { # report FILE LABEL
    local f=$1 label=$2 name best med fails ratio_best ratio_med plain_best v
    plain_best=$(awk '$1 == "plain" && $2 > 0 && $4 == 0 { print $3 }' "$f" | bench_min)
    bench_fmt '  %-18s %8s %8s %9s %9s %6s\n' "$label" best median "best/pl" "med r/pl" fails
    for name in "${names[@]}"; do
        best=$(awk -v n="$name" '$1 == n && $2 > 0 && $4 == 0 { print $3 }' "$f" | bench_min)
        med=$(awk -v n="$name" '$1 == n && $2 > 0 && $4 == 0 { print $3 }' "$f" | bench_median)
        fails=$(awk -v n="$name" '$1 == n && $2 > 0 && $4 != 0' "$f" | wc -l)
        ratio_best=$(bench_div "$best" "$plain_best")
        # Per-round ratio, only rounds where both ran.
        ratio_med=$(awk -v n="$name" '$2 > 0 && $4 == 0 && $1 == "plain" { p[$2] = $3 }
                     $2 > 0 && $4 == 0 && $1 == n { v[$2] = $3 }
                     END { for (r in v) if (r in p) print v[r] / p[r] }' "$f" | bench_median)
        bench_fmt '  %-18s %8.3f %8.3f %9.3f %9.3f %6d\n' "$name" "${best:-nan}" "${med:-nan}" \
            "$ratio_best" "${ratio_med:-nan}" "$fails"
        if [[ $name == ours-dir || $name == ours-sqfs ]]; then
            v=$(bench_verdict "$ratio_best" "$goal")
            bench_summary "fanout $label $name: $(bench_fmt '%.3f' "$ratio_best") of plain (best of $rounds; goal <= $goal): $v"
        fi
        if [[ $name == cc-sqfs ]]; then
            bench_summary "fanout $label $name (Charliecloud 0.31): $(bench_fmt '%.3f' "$ratio_best") of plain, $fails failed runs"
        fi
    done
}

for n in "${sizes[@]}"; do
    for cmd in /bin/true "sleep 0.3"; do
        f=$(run_group "$n" $cmd)
        report "$f" "n=$n ${cmd##*/}"
        echo
    done
done
for e in "$work"/*.err; do
    [[ -s $e ]] || continue
    bench_note "$(basename "$e" .err) printed: $(sort "$e" | uniq -c | sort -rn | head -n 3 | tr '\n' ' ')"
done
echo "  load after: $(cut -d' ' -f1-3 /proc/loadavg)"

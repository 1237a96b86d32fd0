#!/bin/bash
# squashrun.sh: start-up time of `ch-run IMG.sqfs -- /bin/true`, ours
# (bin/ch-run) against Charliecloud 0.31's (/usr/bin/ch-run), on the same
# SquashFS file: the fixture (fixture.sh) written by our ch-convert with its
# defaults (squashfs.sh leaves it; otherwise it is made here). Both mount it
# with FUSE, ours with its own server, Charliecloud's with libsquashfuse_ll,
# each in the container's mount namespace, so concurrent runs don't collide.
# Both get the same mount point with -m, an empty directory in the work area
# (Charliecloud's default, /var/tmp/$USER.ch/mnt, would leave a directory on
# disk). They run round-robin in one timeit (CH_BENCH_SQUASHRUN_ROUNDS rounds,
# default 150, after 10 warm-up rounds), once per user from bench_users; as
# root, /dev/fuse is made usable by the unprivileged user for the run and its
# mode restored afterwards.
#
# Goal (informational): ours / charliecloud <= 0.5 (median of the per-round
# ratios).
#
# Environment: CH_BENCH_OURS (default bin/ch-run), CH_BENCH_PEER (default
# /usr/bin/ch-run), and lib.sh's and fixture.sh's.
set -euo pipefail
# shellcheck source=test/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
# shellcheck source=test/bench/fixture.sh
source "$bench_top/test/bench/fixture.sh"

goal_ratio=0.50
rounds=${CH_BENCH_SQUASHRUN_ROUNDS:-150}
warmup=10

bench_fixture
bench_ch_runs
image=$(bench_fixture_sqfs)

# check_tools USER MNT: both must run the image as USER, and see it as /.
check_tools() {
    local user=$1 mnt=$2 name cmd err rc root
    for name in ours charliecloud; do
        cmd=("$ours" -m "$mnt" "$image" -- /bin/true)
        [[ $name == ours ]] || cmd=("$peer" -m "$mnt" "$image" -- /bin/true)
        rc=0
        err=$(bench_as "$user" "${cmd[@]}" 2>&1 >/dev/null) || rc=$?
        if ((rc != 0)); then
            echo "  $name can't run the SquashFS image as $user (exit $rc): ${cmd[*]}"
            [[ -z $err ]] || bench_indent <<<"$err"
            [[ $err != *busy* ]] || echo "  (a mount point is busy: is something mounted on $mnt?)"
            return 1
        fi
        [[ -z $err ]] || bench_note "$name printed on stderr: $(head -n 3 <<<"$err" | tr '\n' ' ')"
        cmd[-1]=/bin/cat
        root=$(bench_as "$user" "${cmd[@]}" /proc/self/mountinfo | awk '$5 == "/" { print $9 }')
        echo "  $name runs it: / is ${root:-?}"
    done
}

run_pass() { # run_pass USER
    local user=$1 out mnt ratio ratio_cpu rss_ours rss_peer rss_server served v
    out=$CH_BENCH_DIR/squashrun.$user.tsv
    mnt=$CH_BENCH_DIR/mnt.$user
    mkdir -p "$mnt"
    chown "$user" "$mnt"
    bench_header "squashrun: ch-run IMG.sqfs -- /bin/true, as $user (uid $(id -u "$user"))"
    echo "  fixture: $fixture_info"
    echo "  image:   $image ($(bench_fmt '%.1f' "$(bench_div "$(stat -c %s "$image")" 1048576)") MiB," \
         "our ch-convert's defaults); mount point -m $mnt"
    echo "  ours:    $ours_src"
    echo "  peer:    $peer (Charliecloud $peer_version)"
    check_tools "$user" "$mnt" || return 1

    if ! bench_timeit "$user" "$out" -r "$rounds" -w "$warmup" -- \
            ours "$ours" -m "$mnt" "$image" -- /bin/true :: \
            charliecloud "$peer" -m "$mnt" "$image" -- /bin/true; then
        echo "  timing failed as $user"
        return 1
    fi
    rss_ours=$(bench_values "$out" ours rss | bench_median)
    rss_peer=$(bench_values "$out" charliecloud rss | bench_median)
    echo "  $rounds rounds after $warmup warm-up, interleaved;" \
         "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
    bench_fmt '  %-26s %8s %8s %8s %9s\n' "wall time, ms" median p10 p90 "cpu med."
    bench_row "$out" ours "ours"
    bench_row "$out" charliecloud "charliecloud $peer_version"
    bench_fmt '  peak RSS of the process started (ru_maxrss): ours %s KiB, charliecloud %s KiB\n' \
        "$rss_ours" "$rss_peer"
    echo "  (Charliecloud's ch-run serves FUSE itself; ours' server is another process, in cpu but not RSS)"
    # Our server's own peak, after a container read every file of the image
    # once: it says so at -v when it exits, on the stderr that $(...) waits
    # for until the server closes it.
    rss_server=$(bench_as "$user" "$ours" -v -m "$mnt" "$image" -- /bin/sh -c \
        'find / -xdev -type f -exec cat {} + >/dev/null 2>&1; true' 2>&1 >/dev/null \
        | sed -n 's/.*FUSE server for .* peak resident memory \([0-9]*\) KiB.*/\1/p' | tail -n 1)
    bench_fmt '  our FUSE server, after reading every file once: peak RSS %s KiB (documented bound: 64 MiB + 36 MiB of caches + 17 MiB of block lists + 2 blocks per thread)\n' \
        "${rss_server:-?}"
    # What one start asks of our server: counts, which a busy machine does
    # not disturb as it does times.
    served=$(bench_as "$user" "$ours" -v -m "$mnt" "$image" -- /bin/true 2>&1 >/dev/null \
        | sed -n 's/.*FUSE server for .* done ([0-9-]*); \(.*\); peak resident.*/\1/p' | tail -n 1)
    echo "  our FUSE server for one /bin/true: ${served:-?}"
    read -r -a ratio < <(bench_paired "$out" ours charliecloud wall ratio | bench_quantiles)
    ratio_cpu=$(bench_paired "$out" ours charliecloud cpu ratio | bench_median)
    v=$(bench_verdict "${ratio[0]}" "$goal_ratio")
    bench_fmt '  ours / charliecloud:  %.3f  (p10 %.3f, p90 %.3f; cpu %.3f)  goal <= %.2f  %s\n' \
        "${ratio[0]}" "${ratio[1]}" "${ratio[2]}" "$ratio_cpu" "$goal_ratio" "$v"
    bench_summary "$(bench_fmt 'squashrun as %-7s ours/charliecloud %.3f %s' "$user" "${ratio[0]}" "$v")"
}

bench_fuse_open
users=$(bench_users) || exit 1
status=0
for user in $users; do
    run_pass "$user" </dev/null || { status=1; bench_summary "squashrun as $user: FAILED to run"; }
done
exit "$status"

#!/bin/bash
# startup.sh: start-up time of `ch-run IMAGE -- /bin/true`, ours (bin/ch-run)
# against Charliecloud 0.31's (Debian's charliecloud-runtime, /usr/bin/ch-run),
# on the same directory image, with `unshare -Ur /bin/true` (the bare cost of
# a user namespace and two execs) and plain /bin/true as floors. The four run
# round-robin in one timeit process, once per user from bench_users.
#
# Goals (informational; the exit status only says whether everything ran):
#   ours / charliecloud <= 0.8, and ours - unshare -Ur <= 1 ms.
#
# Environment: CH_BENCH_OURS (default bin/ch-run), CH_BENCH_PEER (default
# /usr/bin/ch-run), CH_BENCH_IMAGE (default build/img/busybox), and lib.sh's.
set -euo pipefail
# shellcheck source=test/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

goal_ratio=0.80
goal_diff_ms=1.0

image_src=${CH_BENCH_IMAGE:-$bench_top/build/img/busybox}
[[ -d $image_src ]] || bench_die "image $image_src not found (run make first)"
[[ -x $image_src/bin/busybox && -L $image_src/bin/true ]] \
    || bench_die "$image_src has no /bin/true applet link"
unshare_bin=$(command -v unshare) || bench_die "unshare not found (install util-linux)"

# Stage the binary and the image where the unprivileged pass can read them.
bench_ch_runs
image=$(bench_stage "$image_src" img/busybox)
[[ $peer_version == 0.31* ]] \
    || bench_note "$peer reports version '$peer_version', not 0.31: the goals were set against 0.31"

# Mount points inside a container, with ro/rw, one a line, sorted. Mounts on
# /dev/shm are left out: the fixtures live there and each tool shows its own
# working mounts under it, since both bind /dev recursively.
mount_points() { # mount_points USER CH-RUN
    bench_as "$1" "$2" "$image" -- /bin/cat /proc/self/mountinfo \
        | awk '$5 !~ /^\/dev\/shm(\/|$)/ { print $5, substr($6, 1, 2) }' | sort
}

# Both tools must run the image cleanly and do the same work: the same binds
# (/dev, /proc, /sys, /etc/hosts, /etc/resolv.conf, generated passwd and
# group, the host's /tmp) on a read-only root.
check_tools() { # check_tools USER
    local user=$1 name cmd err rc mine theirs
    for name in ours charliecloud unshare; do
        case $name in
            ours) cmd=("$ours" "$image" -- /bin/true) ;;
            charliecloud) cmd=("$peer" "$image" -- /bin/true) ;;
            unshare) cmd=("$unshare_bin" -Ur /bin/true) ;;
        esac
        rc=0
        err=$(bench_as "$user" "${cmd[@]}" 2>&1 >/dev/null) || rc=$?
        if ((rc != 0)); then
            echo "  $name can't run as $user (exit $rc): ${cmd[*]}"
            [[ -z $err ]] || bench_indent <<<"$err"
            return 1
        fi
        [[ -z $err ]] || bench_note "$name printed on stderr: $(head -n 3 <<<"$err" | tr '\n' ' ')"
    done
    mine=$(mount_points "$user" "$ours")
    theirs=$(mount_points "$user" "$peer")
    if [[ $mine == "$theirs" ]]; then
        echo "  same work: both tools show the same $(wc -l <<<"$mine") mount points" \
             "(outside /dev/shm), / is $(awk '$1 == "/" { print $2 }' <<<"$mine")"
    else
        bench_note "the tools' mount tables differ (< ours, > charliecloud):"
        diff <(echo "$mine") <(echo "$theirs") | grep '^[<>]' | bench_indent || true
    fi
}

run_pass() { # run_pass USER
    local user=$1 out ratio diff ratio_cpu diff_cpu rss_ours rss_peer v1 v2
    out=$CH_BENCH_DIR/startup.$user.tsv
    bench_header "startup: ch-run IMAGE -- /bin/true, as $user (uid $(id -u "$user"))"
    echo "  ours:  $ours_src"
    echo "  peer:  $peer (Charliecloud $peer_version)"
    echo "  image: $image_src, copied to $image"
    check_tools "$user" || return 1

    if ! bench_timeit "$user" "$out" -- \
            ours "$ours" "$image" -- /bin/true :: \
            charliecloud "$peer" "$image" -- /bin/true :: \
            unshare "$unshare_bin" -Ur /bin/true :: \
            true /bin/true; then
        echo "  timing failed as $user"
        return 1
    fi
    rss_ours=$(bench_peak_rss_kb "$user" 5 "$ours" "$image" -- /bin/true) || rss_ours=nan
    rss_peer=$(bench_peak_rss_kb "$user" 5 "$peer" "$image" -- /bin/true) || rss_peer=nan

    echo "  $CH_BENCH_ROUNDS rounds after $CH_BENCH_WARMUP warm-up, interleaved;" \
         "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
    bench_fmt '  %-26s %8s %8s %8s %9s\n' "wall time, ms" median p10 p90 "cpu med."
    bench_row "$out" ours "ours"
    bench_row "$out" charliecloud "charliecloud $peer_version"
    bench_row "$out" unshare "unshare -Ur /bin/true"
    bench_row "$out" true "/bin/true"
    bench_fmt '  peak RSS (/usr/bin/time): ours %s KiB, charliecloud %s KiB\n' "$rss_ours" "$rss_peer"

    # Per-round pairs: the ratio or difference of the two runs of one round.
    read -r -a ratio < <(bench_paired "$out" ours charliecloud wall ratio | bench_quantiles)
    read -r -a diff < <(bench_paired "$out" ours unshare wall diff | bench_quantiles)
    ratio_cpu=$(bench_paired "$out" ours charliecloud cpu ratio | bench_median)
    diff_cpu=$(bench_paired "$out" ours unshare cpu diff | bench_median)
    v1=$(bench_verdict "${ratio[0]}" "$goal_ratio")
    v2=$(bench_verdict "${diff[0]}" "$goal_diff_ms")
    bench_fmt '  ours / charliecloud:  %.3f  (p10 %.3f, p90 %.3f; cpu %.3f)  goal <= %.2f  %s\n' \
        "${ratio[0]}" "${ratio[1]}" "${ratio[2]}" "$ratio_cpu" "$goal_ratio" "$v1"
    bench_fmt '  ours - unshare -Ur:  %+.3f ms (p10 %+.3f, p90 %+.3f; cpu %+.3f)  goal <= %.1f ms  %s\n' \
        "${diff[0]}" "${diff[1]}" "${diff[2]}" "$diff_cpu" "$goal_diff_ms" "$v2"
    bench_summary "$(bench_fmt 'startup as %-8s ours/charliecloud %.3f %s, ours-unshare %+.3f ms %s' \
        "$user" "${ratio[0]}" "$v1" "${diff[0]}" "$v2")"
}

users=$(bench_users) || exit 1
status=0
for user in $users; do
    run_pass "$user" </dev/null || { status=1; bench_summary "startup as $user: FAILED to run"; }
done
exit "$status"

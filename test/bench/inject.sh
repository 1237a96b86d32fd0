#!/bin/bash
# inject.sh: what ch-run --inject adds to a start, for a set of 50 host
# libraries: `ch-run --inject IMAGE -- /bin/true` against the same run
# without injection, and against -W alone (the overlay that --inject adds),
# round-robin in one timeit process, once per user from bench_users. The set
# is given two ways, each measured against a plain start with its own
# configuration: 50 paths (real files of this host, each read for its
# soname), and 50 names (sonames, looked up in the host's ld.so.cache). The
# image (the busybox image, given a copy of this host's ld.so.cache, ~770
# entries, so that the cache is really merged) is a staged directory.
#
# Goal (informational; the exit status only says whether everything ran):
#   inject - plain <= 1 ms (median of per-round differences), for each form.
# Counts that a busy machine does not disturb: system calls (strace -f -c)
# and mounts in the container, with and without --inject.
#
# Environment: CH_BENCH_OURS (default bin/ch-run), CH_BENCH_IMAGE (default
# build/img/busybox), CH_BENCH_INJECT_LIBS (default 50), and lib.sh's.
set -euo pipefail
# shellcheck source=test/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

goal_diff_ms=1.0
nlibs=${CH_BENCH_INJECT_LIBS:-50}

ours_src=${CH_BENCH_OURS:-$bench_top/bin/ch-run}
[[ -x $ours_src ]] || bench_die "$ours_src not found (run make first)"
ours=$(bench_stage "$ours_src" bin/ch-run)
image_src=${CH_BENCH_IMAGE:-$bench_top/build/img/busybox}
[[ -d $image_src ]] || bench_die "image $image_src not found (run make first)"
image=$(bench_stage "$image_src" img/inject-busybox)
cp /etc/ld.so.cache "$image/etc/ld.so.cache" && chmod a+r "$image/etc/ld.so.cache"

# 50 real libraries of this host (ELF, with sonames), bound where they are.
libdir=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
mapfile -t libs < <(find "$libdir" -maxdepth 1 -type f -name 'lib*.so.[0-9]*' | sort | head -n "$nlibs")
((${#libs[@]} == nlibs)) || bench_die "found ${#libs[@]} libraries in $libdir, not $nlibs"
config=$CH_BENCH_DIR/inject-site.yaml
{ echo "run:"; echo "  inject:"; echo "    bench:"; printf '      - %s\n' "${libs[@]}"; } > "$config"
# 50 names of this host's libraries for this machine, from its ld.so.cache.
mapfile -t names < <(/sbin/ldconfig -p | awk -v kind="$(/sbin/ldconfig -p | awk '/libc\.so\.6 / {print $2; exit}')" \
    '$2 == kind && $1 ~ /^lib.*\.so\.[0-9]/ {print $1}' | sort -u | head -n "$nlibs")
((${#names[@]} == nlibs)) || bench_die "found ${#names[@]} library names in ldconfig -p, not $nlibs"
config_names=$CH_BENCH_DIR/inject-site-names.yaml
{ echo "run:"; echo "  inject:"; echo "    bench:"; printf '      - %s\n' "${names[@]}"; } > "$config_names"
chmod a+r "$config" "$config_names"
envs=(/usr/bin/env CH_CONFIG_SITE="$config" CH_CONFIG_USER=/nonexistent)
envs_names=(/usr/bin/env CH_CONFIG_SITE="$config_names" CH_CONFIG_USER=/nonexistent)

count_pass() { # count_pass USER: syscalls and mounts, with and without --inject
    local user=$1 name opts n_sys n_mnt env
    for name in plain W inject names; do
        env=("${envs[@]}")
        case $name in
            plain) opts=() ;;
            W) opts=(-W) ;;
            inject) opts=(--inject) ;;
            names) opts=(--inject); env=("${envs_names[@]}") ;;
        esac
        n_mnt=$(bench_as "$user" "${env[@]}" "$ours" "${opts[@]}" "$image" -- /bin/cat /proc/self/mountinfo | wc -l)
        if command -v strace >/dev/null; then
            # The summary on stderr: the unprivileged user can't reopen
            # this script's pipe as /dev/stdout.
            n_sys=$(bench_as "$user" strace -f -c "${env[@]}" "$ours" "${opts[@]}" "$image" -- /bin/true 2>&1 >/dev/null \
                    | awk '$NF == "total" { print $(NF-2) }')
        else
            n_sys=nan
        fi
        bench_fmt '  %-22s %6s system calls (strace -f, env and /bin/true included), %4s mounts in the container\n' \
            "$name" "$n_sys" "$n_mnt"
    done
}

run_pass() { # run_pass USER
    local user=$1 out diff diff_w diff_cpu v ndiff ndiff_cpu nv
    out=$CH_BENCH_DIR/inject.$user.tsv
    bench_header "inject: ch-run --inject IMAGE -- /bin/true, $nlibs libraries, as $user"
    echo "  ours:  $ours_src; image: $image_src with this host's ld.so.cache"
    local err
    err=$(bench_as "$user" "${envs[@]}" "$ours" --inject "$image" -- /bin/true 2>&1) \
        || { echo "  ch-run --inject fails as $user: $err"; return 1; }
    err=$(bench_as "$user" "${envs_names[@]}" "$ours" --inject "$image" -- /bin/true 2>&1) \
        || { echo "  ch-run --inject (names) fails as $user: $err"; return 1; }
    count_pass "$user"
    if ! bench_timeit "$user" "$out" -- \
            plain "${envs[@]}" "$ours" "$image" -- /bin/true :: \
            W "${envs[@]}" "$ours" -W "$image" -- /bin/true :: \
            inject "${envs[@]}" "$ours" --inject "$image" -- /bin/true :: \
            nplain "${envs_names[@]}" "$ours" "$image" -- /bin/true :: \
            ninject "${envs_names[@]}" "$ours" --inject "$image" -- /bin/true; then
        echo "  timing failed as $user"
        return 1
    fi
    echo "  $CH_BENCH_ROUNDS rounds after $CH_BENCH_WARMUP warm-up, interleaved;" \
         "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
    bench_fmt '  %-26s %8s %8s %8s %9s\n' "wall time, ms" median p10 p90 "cpu med."
    bench_row "$out" plain "plain"
    bench_row "$out" W "-W (overlay only)"
    bench_row "$out" inject "--inject ($nlibs paths)"
    bench_row "$out" nplain "plain (names' config)"
    bench_row "$out" ninject "--inject ($nlibs names)"
    read -r -a diff < <(bench_paired "$out" inject plain wall diff | bench_quantiles)
    diff_w=$(bench_paired "$out" inject W wall diff | bench_median)
    diff_cpu=$(bench_paired "$out" inject plain cpu diff | bench_median)
    v=$(bench_verdict "${diff[0]}" "$goal_diff_ms")
    bench_fmt '  inject - plain:  %+.3f ms (p10 %+.3f, p90 %+.3f; cpu %+.3f)  goal <= %.1f ms  %s\n' \
        "${diff[0]}" "${diff[1]}" "${diff[2]}" "$diff_cpu" "$goal_diff_ms" "$v"
    bench_fmt '  inject - (-W):   %+.3f ms (what the binds and the cache cost beyond the overlay)\n' "$diff_w"
    read -r -a ndiff < <(bench_paired "$out" ninject nplain wall diff | bench_quantiles)
    ndiff_cpu=$(bench_paired "$out" ninject nplain cpu diff | bench_median)
    nv=$(bench_verdict "${ndiff[0]}" "$goal_diff_ms")
    bench_fmt '  names: inject - plain:  %+.3f ms (p10 %+.3f, p90 %+.3f; cpu %+.3f)  goal <= %.1f ms  %s\n' \
        "${ndiff[0]}" "${ndiff[1]}" "${ndiff[2]}" "$ndiff_cpu" "$goal_diff_ms" "$nv"
    bench_summary "$(bench_fmt 'inject as %-8s paths: inject-plain %+.3f ms %s; names: %+.3f ms %s' \
        "$user" "${diff[0]}" "$v" "${ndiff[0]}" "$nv")"
}

users=$(bench_users) || exit 1
status=0
for user in $users; do
    run_pass "$user" </dev/null || { status=1; bench_summary "inject as $user: FAILED to run"; }
done
exit "$status"

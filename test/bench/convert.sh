#!/bin/bash
# convert.sh: unpacking a tar.gz into a directory, ours (`bin/ch-convert
# IMG.tar.gz /path/out`) against Charliecloud 0.31's (Debian's charliecloud,
# /usr/bin/ch-convert, which runs tar and gzip), on the same tarball: the
# fixture (fixture.sh) written once by our ch-convert. The output directory
# is on tmpfs and removed before every run, untimed; both tools then write a
# new directory. The two run round-robin in one timeit
# (CH_BENCH_CONVERT_ROUNDS rounds, default 5, after one warm-up round), as
# the unprivileged user (CH_BENCH_USER when run as root), as people unpack
# images. Before timing, both outputs are compared entry by entry (type, mode,
# size, link target, file mtime and content): they must be the same tree.
#
# Goal (informational): ours / charliecloud wall <= 0.5 (median of the
# per-round ratios).
#
# Then peak memory (/usr/bin/time's maximum RSS) of ours, tar.gz -> dir and
# tar.gz -> squash, against the bound ch-convert(1) documents under LIMITS
# (64 MiB plus 2 KiB per entry), and for refusing a hostile tarball (one
# name of 20 000 components).
#
# Environment: CH_BENCH_CONVERT (default bin/ch-convert), CH_BENCH_PEER_CONVERT
# (default /usr/bin/ch-convert), and lib.sh's and fixture.sh's.
set -euo pipefail
# shellcheck source=test/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
# shellcheck source=test/bench/fixture.sh
source "$bench_top/test/bench/fixture.sh"

goal_ratio=0.50
rounds=${CH_BENCH_CONVERT_ROUNDS:-5}

ours_src=${CH_BENCH_CONVERT:-$bench_top/bin/ch-convert}
peer=${CH_BENCH_PEER_CONVERT:-/usr/bin/ch-convert}
[[ -x $ours_src ]] || bench_die "$ours_src not found (run make first)"
[[ -x $peer ]] || bench_die "$peer not found (install charliecloud)"

bench_fixture
ours=$(bench_stage "$ours_src" bin/ch-convert)
tarball=$(bench_fixture_tgz)
user=$(bench_users | tail -n 1)
work=$CH_BENCH_DIR/convert.$user
mkdir -p "$work"
chown "$user" "$work"
peer_version=$(bench_as "$user" "$peer" --version 2>&1 | tail -n 1 || true)

bench_header "convert: tar.gz -> dir, ours vs Charliecloud, as $user (uid $(id -u "$user"))"
echo "  fixture: $fixture_info"
echo "  tarball: $tarball ($(bench_fmt '%.1f' "$(bench_div "$(stat -c %s "$tarball")" 1048576)") MiB," \
     "written by our ch-convert)"
echo "  ours:    $ours_src"
echo "  peer:    $peer (Charliecloud $peer_version)"
[[ $peer_version == 0.31* ]] \
    || bench_note "$peer reports version '$peer_version', not 0.31: the goal was set against 0.31"

# manifest DIR: one line per entry, sorted: path, type, mode, size (files),
# link target, mtime (files and links) and an MD5 of the content (files).
# Directory mtimes are left out: creating entries changes them.
manifest() {
    (cd "$1" && find . -printf '%P\t%y\t%m\t%s\t%l\t%T@\n' | awk -F'\t' -v OFS='\t' '
        { if ($2 == "d") { $4 = ""; $6 = "" } else if ($2 == "l") { $4 = "" }
          sub(/\.0+$/, "", $6); print }' | sort)
    (cd "$1" && find . -type f -print0 | sort -z | xargs -0 md5sum | sed 's|  \./|\t|')
}

# Both must convert cleanly and write the same tree.
rm -rf "$work"/out-*
for tool in ours charliecloud; do
    cmd=("$ours" "$tarball" "$work/out-$tool")
    [[ $tool == ours ]] || cmd=("$peer" "$tarball" "$work/out-$tool")
    rc=0
    err=$(bench_as "$user" "${cmd[@]}" 2>&1 >/dev/null) || rc=$?
    if ((rc != 0)); then
        echo "  $tool can't convert as $user (exit $rc): ${cmd[*]}"
        bench_indent <<<"$err"
        bench_summary "convert as $user: FAILED to run"
        exit 1
    fi
done
manifest "$work/out-ours" >"$work/manifest-ours"
manifest "$work/out-charliecloud" >"$work/manifest-charliecloud"
if cmp -s "$work/manifest-ours" "$work/manifest-charliecloud"; then
    echo "  same tree: $(grep -c $'\t' "$work/manifest-ours") manifest lines agree (type, mode, size, target," \
         "mtime, MD5)"
else
    bench_note "the trees differ (< ours, > charliecloud), first 10 lines:"
    diff "$work/manifest-ours" "$work/manifest-charliecloud" | grep '^[<>]' | head -n 10 | bench_indent || true
fi
rm -rf "$work"/out-* "$work"/manifest-*

# peak_rss OUT: our peak RSS in KiB converting the tarball to OUT (in $work),
# as $user; empty if it failed.
peak_rss() {
    rm -rf "${work:?}/$1"
    bench_as "$user" /usr/bin/time -f '%M' -o "$work/rss" "$ours" "$2" "$work/$1" >/dev/null 2>&1 || return 0
    tail -n 1 "$work/rss"
    rm -rf "${work:?}/$1"
}
entries=$(tar tzf "$tarball" | wc -l)
bound_kib=$((65536 + 2 * entries))
rss_dir=$(peak_rss out-mem "$tarball")
rss_sq=$(peak_rss out-mem.sqfs "$tarball")
python3 -c 'import io, sys, tarfile
with tarfile.open(sys.argv[1], "w:gz", format=tarfile.PAX_FORMAT) as t:
    ti = tarfile.TarInfo("a/" * 20000 + "f"); ti.size = 1; t.addfile(ti, io.BytesIO(b"x"))' "$work/deep.tar.gz"
chown "$user" "$work/deep.tar.gz"
rm -f "$work/rss"
bench_as "$user" /usr/bin/time -f '%M %e' -o "$work/rss" "$ours" "$work/deep.tar.gz" "$work/out-deep" >/dev/null 2>&1 || true
read -r rss_deep secs_deep < <(tail -n 1 "$work/rss")
mem_verdict=ok
for r in "$rss_dir" "$rss_sq"; do
    [[ -n $r ]] && ((r <= bound_kib)) || mem_verdict=OVER
done
bench_fmt '  peak RSS, ours: tar.gz -> dir %.1f MiB, -> squash %.1f MiB, for %d entries; documented bound\n' \
    "$(bench_div "${rss_dir:-0}" 1024)" "$(bench_div "${rss_sq:-0}" 1024)" "$entries"
bench_fmt '    64 MiB + 2 KiB x %d = %.1f MiB  %s\n' "$entries" "$(bench_div "$bound_kib" 1024)" "$mem_verdict"
bench_fmt '  hostile (one name of 20 000 components): refused in %s s, peak RSS %.1f MiB\n' \
    "${secs_deep:-?}" "$(bench_div "${rss_deep:-0}" 1024)"
[[ ! -e $work/out-deep ]] || bench_note "the hostile tarball left $work/out-deep"

out=$CH_BENCH_DIR/convert.tsv
t0=$SECONDS
bench_timeit "$user" "$out" -r "$rounds" -w 1 -b "rm -rf '$work'/out-*" -- \
    ours "$ours" "$tarball" "$work/out-ours" :: \
    charliecloud "$peer" "$tarball" "$work/out-charliecloud" \
    || bench_die "timing failed as $user"
rm -rf "$work"
echo "  $rounds rounds after 1 warm-up, interleaved, in $((SECONDS - t0)) s; load average" \
     "$(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"

row() { # row NAME LABEL
    local w c r
    read -r -a w < <(bench_values "$out" "$1" wall | bench_quantiles)
    c=$(bench_values "$out" "$1" cpu | bench_median)
    r=$(bench_values "$out" "$1" rss | bench_median)
    bench_fmt '  %-26s %8.3f %8.3f %8.3f %9.3f %9.1f\n' "$2" "$(bench_div "$(bench_min < <(bench_values \
        "$out" "$1" wall))" 1000)" "$(bench_div "${w[0]}" 1000)" "$(bench_div "${w[2]}" 1000)" \
        "$(bench_div "$c" 1000)" "$(bench_div "$r" 1024)"
}
bench_fmt '  %-26s %8s %8s %8s %9s %9s\n' "seconds" best median max "cpu med." "RSS MiB"
row ours "ours"
row charliecloud "charliecloud $peer_version"
echo "  (RSS: the largest process; Charliecloud's work is spread over tar, gzip and a shell)"
ratios=$(bench_paired "$out" ours charliecloud wall ratio)
ratio=$(bench_median <<<"$ratios")
ratio_cpu=$(bench_paired "$out" ours charliecloud cpu ratio | bench_median)
v=$(bench_verdict "$ratio" "$goal_ratio")
bench_fmt '  ours / charliecloud:  %.3f  (best %.3f, worst %.3f; cpu %.3f)  goal <= %.2f  %s\n' \
    "$ratio" "$(bench_min <<<"$ratios")" "$(sort -g <<<"$ratios" | tail -n 1)" "$ratio_cpu" "$goal_ratio" "$v"
bench_summary "$(bench_fmt 'convert  as %-7s ours/charliecloud tar.gz->dir %.3f %s' "$user" "$ratio" "$v")"

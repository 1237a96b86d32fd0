#!/bin/bash
# squashfs.sh: writing the fixture (fixture.sh) as a SquashFS file, ours
# (`bin/ch-convert DIR OUT.sqfs`) against `mksquashfs DIR OUT.sqfs -b BLOCK
# -comp COMP -noappend` with the block size and compressor ch-convert uses by
# default, read from SquashOptions in lib/image/squash.hh. mksquashfs also
# gets -quiet -no-progress: output only.
# Both use every CPU (mksquashfs by default, ours one thread per CPU) and each
# compressor's default level: mksquashfs's gzip 9, zstd 15, xz 6, lz4 fast;
# ours the same except gzip, which is libdeflate's level 7 (smaller output
# than zlib's 9; squash_compressors.hh has the figures). The sizes are
# printed, so the comparison stays honest.
#
# The other compressors both support (gzip, zstd, lz4, xz; CH_BENCH_SQUASH_COMPS
# chooses, default all four) are compared the same way, to inform the choice
# of the default: ours is then `ch-convert --squash-comp COMP
# --squash-block-size BLOCK`. Our gzip is libdeflate's, writing zlib streams
# as mksquashfs's zlib does.
#
# All commands run round-robin in one timeit (CH_BENCH_SQUASH_ROUNDS rounds,
# default 3, no warm-up: everything is on tmpfs), as the unprivileged user
# (CH_BENCH_USER when run as root), as people convert images. Each run
# replaces its own previous output, on both sides. Wall time: best and median;
# CPU: user+system; peak RSS: ru_maxrss from wait4, what /usr/bin/time -f %M
# prints; size of the output.
#
# Goals (default compressor): ours / mksquashfs wall <= 0.9 (median of the
# per-round ratios), ours' peak RSS <= 64 MiB.
set -euo pipefail
# shellcheck source=test/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
# shellcheck source=test/bench/fixture.sh
source "$bench_top/test/bench/fixture.sh"

goal_ratio=0.90
goal_rss_mib=64
rounds=${CH_BENCH_SQUASH_ROUNDS:-3}

convert_src=${CH_BENCH_CONVERT:-$bench_top/bin/ch-convert}
mksquashfs=$(command -v mksquashfs) || bench_die "mksquashfs not found (install squashfs-tools)"
[[ -x $convert_src ]] || bench_die "$convert_src not found (run make first)"

# ch-convert's defaults, from the source, so this follows them.
hh=$bench_top/lib/image/squash.hh
block=$(sed -n 's|^ *unsigned block_size = \([0-9 *]*\);.*|\1|p' "$hh")
comp=$(sed -n 's|^ *std::string compressor = "\([a-z0-9]*\)";.*|\1|p' "$hh")
[[ -n $block && -n $comp ]] || bench_die "can't read SquashOptions' defaults from $hh"
block=$((block))
comps=("$comp")
for c in ${CH_BENCH_SQUASH_COMPS:-gzip zstd lz4 xz}; do
    [[ $c == "$comp" ]] || comps+=("$c")
done

bench_fixture
convert=$(bench_stage "$convert_src" bin/ch-convert)
user=$(bench_users | tail -n 1)
work=$CH_BENCH_DIR/squashfs.$user
mkdir -p "$work"
chown "$user" "$work"

bench_header "squashfs: dir -> SquashFS, ours vs mksquashfs, as $user (uid $(id -u "$user"))"
echo "  fixture: $fixture_info"
echo "  ours:    $convert_src (default $comp, block $block; others with --squash-comp)"
echo "  peer:    $mksquashfs ($("$mksquashfs" -version 2>&1 | head -n 1))"

# One timeit: per compressor, ours then mksquashfs.
cmds=()
for c in "${comps[@]}"; do
    if [[ $c == "$comp" ]]; then
        cmds+=(ours-"$c" "$convert" "$fixture_img" "$work/ours-$c.sqfs" ::)
    else
        cmds+=(ours-"$c" "$convert" --squash-comp "$c" --squash-block-size "$block" "$fixture_img"
               "$work/ours-$c.sqfs" ::)
    fi
    cmds+=(mksquashfs-"$c" "$mksquashfs" "$fixture_img" "$work/mksquashfs-$c.sqfs" -b "$block" -comp "$c"
           -noappend -quiet -no-progress ::)
done
unset 'cmds[${#cmds[@]}-1]'
out=$CH_BENCH_DIR/squashfs.tsv
t0=$SECONDS
bench_timeit "$user" "$out" -r "$rounds" -w 0 -- "${cmds[@]}" || bench_die "timing failed as $user"
echo "  $rounds rounds, interleaved, in $((SECONDS - t0)) s; load average $(cut -d' ' -f1-3 /proc/loadavg)," \
     "$(nproc) CPUs"

# The outputs must be what was asked for: compressor and block size.
for tool in ours mksquashfs; do
    s=$(unsquashfs -s "$work/$tool-$comp.sqfs" 2>/dev/null) || bench_die "unsquashfs can't read $tool-$comp.sqfs"
    got_comp=$(awk '/^Compression / { print $2 }' <<<"$s")
    got_block=$(awk '/^Block size / { print $3 }' <<<"$s")
    [[ $got_comp == "$comp" && $got_block == "$block" ]] \
        || bench_note "$tool's output says compression $got_comp, block size $got_block"
done
n_ours=$(unsquashfs -lls "$work/ours-$comp.sqfs" | grep -c '^[-dlcbps]')
n_mksq=$(unsquashfs -lls "$work/mksquashfs-$comp.sqfs" | grep -c '^[-dlcbps]')
echo "  same content: $n_ours entries in ours, $n_mksq in mksquashfs's ($comp, block $block, per unsquashfs)"

bench_fmt '  %-6s %-14s %9s %9s %9s %10s %10s\n' comp tool "best, s" "median" "cpu med." "peak RSS" "size"
declare -A wall_ratio rss_mib
for c in "${comps[@]}"; do
    for tool in ours mksquashfs; do
        name=$tool-$c
        if [[ $tool == mksquashfs ]]; then
            label=mksquashfs first=
        elif [[ $c == "$comp" ]]; then
            label="ours (ch-convert)" first=$c
        else
            label="ours (--squash-comp)" first=$c
        fi
        best=$(bench_values "$out" "$name" wall | bench_min)
        med=$(bench_values "$out" "$name" wall | bench_median)
        cpu=$(bench_values "$out" "$name" cpu | bench_median)
        rss=$(bench_values "$out" "$name" rss | bench_median)
        size=$(stat -c %s "$work/$name.sqfs")
        bench_fmt '  %-6s %-18s %8.2f %8.2f %9.2f %6.1f MiB %6.1f MiB\n' "$first" "$label" \
            "$(bench_div "$best" 1000)" "$(bench_div "$med" 1000)" "$(bench_div "$cpu" 1000)" \
            "$(bench_div "$rss" 1024)" "$(bench_div "$size" 1048576)"
        [[ $tool == mksquashfs ]] || rss_mib[$c]=$(bench_div "$rss" 1024)
    done
    ratios=$(bench_paired "$out" "ours-$c" "mksquashfs-$c" wall ratio)
    wall_ratio[$c]=$(bench_median <<<"$ratios")
    rc=$(bench_paired "$out" "ours-$c" "mksquashfs-$c" cpu ratio | bench_median)
    rr=$(bench_div "$(bench_values "$out" "ours-$c" rss | bench_median)" \
                   "$(bench_values "$out" "mksquashfs-$c" rss | bench_median)")
    rs=$(bench_div "$(stat -c %s "$work/ours-$c.sqfs")" "$(stat -c %s "$work/mksquashfs-$c.sqfs")")
    bench_fmt '  %-6s %-18s wall %.3f (%.3f-%.3f), cpu %.3f, peak RSS %.3f, size %.3f\n' "" "ours / mksquashfs" \
        "${wall_ratio[$c]}" "$(bench_min <<<"$ratios")" "$(sort -g <<<"$ratios" | tail -n 1)" "$rc" "$rr" "$rs"
done

v1=$(bench_verdict "${wall_ratio[$comp]}" "$goal_ratio")
v2=$(bench_verdict "${rss_mib[$comp]}" "$goal_rss_mib")
bench_fmt '  default %s: ours / mksquashfs wall %.3f  goal <= %.2f  %s; ours peak RSS %.1f MiB  goal <= %d MiB  %s\n' \
    "$comp" "${wall_ratio[$comp]}" "$goal_ratio" "$v1" "${rss_mib[$comp]}" "$goal_rss_mib" "$v2"
others=
for c in "${comps[@]:1}"; do
    others+=$(bench_fmt ' %s %.2f' "$c" "${wall_ratio[$c]}")
done
bench_summary "$(bench_fmt 'squashfs as %-7s ours/mksquashfs %s %.3f %s, peak RSS %.1f MiB %s (others:%s)' \
    "$user" "$comp" "${wall_ratio[$comp]}" "$v1" "${rss_mib[$comp]}" "$v2" "$others")"

# Leave ours for the benchmarks that run a SquashFS image of the fixture.
if [[ ! -f $fixture_dir/img.sqfs ]]; then
    mv "$work/ours-$comp.sqfs" "$fixture_dir/img.sqfs"
    chmod 0644 "$fixture_dir/img.sqfs"
fi
rm -rf "$work"

#!/bin/bash
# readers.sh: CH_BENCH_READERS (default 16) concurrent `ch-run IMG.sqfs -- cat
# BIGFILE`, started at once, output to /dev/null, timed until the last one
# ends; ours (bin/ch-run) against Charliecloud 0.31's (/usr/bin/ch-run), on the
# same SquashFS file: a copy of the fixture (fixture.sh) plus
# /opt/bench/big.dat, 256 MiB that gzip shrinks only to about 3/4 (mkfiles.c
# "big"), so every block must be decompressed, written by our ch-convert with
# its defaults. Each ch-run mounts the image for itself, so this is 16 FUSE
# servers each decompressing the whole file, on a machine with few CPUs.
# The two run round-robin in one timeit (CH_BENCH_READERS_ROUNDS rounds,
# default 3), once per user from bench_users.
#
# Page cache: a user can't drop caches, and dropping them would change
# nothing here anyway: the image file lives on tmpfs, which is the page
# cache, so its compressed bytes are always in memory. What a FUSE mount
# caches (decompressed pages, kept across opens with keep_cache) belongs to
# that mount, and every ch-run makes a new one, gone when it exits; so no run
# inherits another's work, and the first round does the same work as the
# later ones. The first round is still reported apart from the others.
#
# No goal: the ratio is information.
#
# Environment: CH_BENCH_OURS (default bin/ch-run), CH_BENCH_PEER (default
# /usr/bin/ch-run), CH_BENCH_READERS, CH_BENCH_READERS_MIB (default 256), and
# lib.sh's and fixture.sh's.
set -euo pipefail
# shellcheck source=test/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
# shellcheck source=test/bench/fixture.sh
source "$bench_top/test/bench/fixture.sh"

rounds=${CH_BENCH_READERS_ROUNDS:-3}
readers=${CH_BENCH_READERS:-16}
big_mib=${CH_BENCH_READERS_MIB:-256}
big=/opt/bench/big.dat

bench_fixture
bench_ch_runs

# The image: the fixture (hard-linked, not copied) plus the big file.
image=$fixture_dir/readers.sqfs
if [[ ! -f $image ]]; then
    t0=$SECONDS
    tree=$fixture_dir/readers
    rm -rf "$tree"
    cp -al "$fixture_img" "$tree"
    "$(bench_compile mkfiles)" big "$tree$big" "$fixture_seed" $((big_mib * 1048576)) >/dev/null \
        || bench_die "can't write $tree$big"
    chmod 0644 "$tree$big"
    "$fixture_convert" -q "$tree" "$image" || bench_die "can't make $image"
    chmod 0644 "$image"
    big_md5=$(md5sum <"$tree$big" | cut -d' ' -f1)
    echo "$big_md5" >"$image.md5"
    rm -rf "$tree"
    made="made in $((SECONDS - t0)) s"
else
    made="made earlier"
fi
big_md5=$(cat "$image.md5")

# Starts N copies of a command at once, its output to /dev/null; waits for
# all, and fails if any did.
# shellcheck disable=SC2016 # expanded by the bash that runs it
launcher='n=$1; shift; pids=()
for ((i = 0; i < n; i++)); do "$@" >/dev/null & pids+=($!); done
s=0
for p in "${pids[@]}"; do wait "$p" || s=1; done
exit $s'

# check_tools USER MNT: both read the big file intact.
check_tools() {
    local user=$1 mnt=$2 name cmd sum
    for name in ours charliecloud; do
        cmd=("$ours" -m "$mnt" "$image" -- cat "$big")
        [[ $name == ours ]] || cmd=("$peer" -m "$mnt" "$image" -- cat "$big")
        sum=$(bench_as "$user" "${cmd[@]}" | md5sum | cut -d' ' -f1)
        if [[ $sum != "$big_md5" ]]; then
            echo "  $name read $big wrong as $user (MD5 $sum, want $big_md5): ${cmd[*]}"
            return 1
        fi
    done
    echo "  both read $big intact (MD5 $big_md5)"
}

run_pass() { # run_pass USER
    local user=$1 out mnt first_o first_c rest_o rest_c ratio ratio_first cpu_o cpu_c
    out=$CH_BENCH_DIR/readers.$user.tsv
    mnt=$CH_BENCH_DIR/mnt.$user
    mkdir -p "$mnt"
    chown "$user" "$mnt"
    bench_header "readers: $readers x ch-run IMG.sqfs -- cat $big at once, as $user (uid $(id -u "$user"))"
    echo "  fixture: $fixture_info"
    echo "  image:   $image ($(bench_fmt '%.1f' "$(bench_div "$(stat -c %s "$image")" 1048576)") MiB; the" \
         "fixture plus $big, $big_mib MiB; our ch-convert's defaults; $made); mount point -m $mnt"
    echo "  ours:    $ours_src"
    echo "  peer:    $peer (Charliecloud $peer_version)"
    check_tools "$user" "$mnt" || return 1
    if ! bench_timeit "$user" "$out" -r "$rounds" -w 0 -- \
            ours bash -c "$launcher" readers "$readers" "$ours" -m "$mnt" "$image" -- cat "$big" :: \
            charliecloud bash -c "$launcher" readers "$readers" "$peer" -m "$mnt" "$image" -- cat "$big"; then
        echo "  timing failed as $user"
        return 1
    fi
    echo "  $rounds rounds, interleaved; load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
    first_o=$(awk '$1 == "ours" && $2 == 0 { print $3 / 1e9 }' "$out")
    first_c=$(awk '$1 == "charliecloud" && $2 == 0 { print $3 / 1e9 }' "$out")
    rest_o=$(awk '$1 == "ours" && $2 > 0 { print $3 / 1e9 }' "$out" | bench_median)
    rest_c=$(awk '$1 == "charliecloud" && $2 > 0 { print $3 / 1e9 }' "$out" | bench_median)
    cpu_o=$(bench_values "$out" ours cpu | bench_median)
    cpu_c=$(bench_values "$out" charliecloud cpu | bench_median)
    bench_fmt '  %-26s %10s %14s %16s\n' "wall time, s" "1st round" "later (median)" "cpu, s (median)"
    bench_fmt '  %-26s %10.2f %14.2f %16.2f\n' ours "$first_o" "$rest_o" "$(bench_div "$cpu_o" 1000)"
    bench_fmt '  %-26s %10.2f %14.2f %16.2f\n' "charliecloud $peer_version" "$first_c" "$rest_c" \
        "$(bench_div "$cpu_c" 1000)"
    echo "  (cpu: every process of the round: the ch-runs, their FUSE servers and the cats)"
    ratio=$(bench_paired "$out" ours charliecloud wall ratio | bench_median)
    ratio_first=$(bench_div "$first_o" "$first_c")
    bench_fmt '  ours / charliecloud:  %.3f  (1st round %.3f)  no goal\n' "$ratio" "$ratio_first"
    bench_summary "$(bench_fmt 'readers  as %-7s ours/charliecloud %.3f (%d readers, 1st round %.3f)' \
        "$user" "$ratio" "$readers" "$ratio_first")"
}

bench_fuse_open
users=$(bench_users) || exit 1
status=0
for user in $users; do
    run_pass "$user" </dev/null || { status=1; bench_summary "readers as $user: FAILED to run"; }
done
exit "$status"

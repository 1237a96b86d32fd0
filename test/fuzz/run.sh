#!/bin/bash
# run.sh FUZZER SECONDS [WORKDIR]: fuzz ch-convert's SquashFS source for
# SECONDS. Seeds: the hostile corpus (fixtures/hostile-squash.sh, small trees
# without busybox) and a few good images (mksquashfs with each compressor,
# ch-convert's, and a program with its loader cache). The corpus libFuzzer
# grows is kept in WORKDIR/corpus for the next run; findings go to
# WORKDIR/findings/. Exits non-zero if the
# fuzzer found anything (crash, leak, timeout, out of memory).
#
# Limits, and why: no single allocation over 64 MiB (ch-convert's documented
# peak; a bigger one means a size from the image was believed), 1 GiB RSS in
# all (ASan's own overhead included), 10 s per input (a hang).
set -euo pipefail
fuzzer=${1:?usage: run.sh FUZZER SECONDS [WORKDIR]}
seconds=${2:?usage: run.sh FUZZER SECONDS [WORKDIR]}
top=$(cd "$(dirname "$0")/../.." && pwd)
work=${3:-$top/build-fuzz/run}
fuzzer=$(readlink -f "$fuzzer")
mkdir -p "$work/corpus" "$work/findings"
seeds=$work/seeds
if [[ ! -e $seeds/.complete ]]; then
    rm -rf "$seeds"
    mkdir -p "$seeds"
    CH_HOSTILE_TINY=1 CH_HOSTILE_OUT=$seeds/hostile CH_TEST_BIN=$top/bin \
        bash "$top/test/integration/fixtures/hostile-squash.sh" >/dev/null
    mv "$seeds"/hostile/*.sqfs "$seeds/"
    rm -rf "$seeds/hostile"
    # Good images: every entry type, a sparse file, hard links, several
    # blocks, and each compressor mksquashfs has.
    t=$seeds/tree
    mkdir -p "$t/dir/sub" "$t/empty"
    head -c 300000 /dev/urandom | base64 > "$t/dir/text"
    head -c 5000 /dev/urandom > "$t/dir/sub/random"
    echo small > "$t/small"
    ln "$t/small" "$t/dir/hardlink"
    ln -s ../small "$t/dir/symlink"
    truncate -s 1M "$t/sparse"
    echo tail >> "$t/sparse"
    mkfifo "$t/fifo"
    for comp in gzip xz zstd lz4 lzo; do
        mksquashfs "$t" "$seeds/good-$comp.sqfs" -comp "$comp" -b 4096 -noappend -quiet -no-progress \
            >/dev/null 2>&1 || rm -f "$seeds/good-$comp.sqfs"
    done
    rm "$t/fifo"
    USER=${USER:-$(id -un)} "$top/bin/ch-convert" -q "$t" "$seeds/good-ours.sqfs"
    rm -rf "$t"
    # A program, its loader cache and stand-ins for its loader and libc, for
    # the FUSE server's guess of what a program loads (ELF headers, the
    # cache), in blocks of 4 KiB so the headers span several.
    mkdir -p "$t/bin" "$t/etc" "$t/lib64" "$t/lib/x86_64-linux-gnu"
    cp /bin/true "$t/bin/true"
    cp /etc/ld.so.cache "$t/etc/ld.so.cache" 2>/dev/null || true
    echo loader > "$t/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$t/lib64/ld-linux-x86-64.so.2"
    head -c 20000 /dev/urandom > "$t/lib/x86_64-linux-gnu/libc.so.6"
    mksquashfs "$t" "$seeds/good-program.sqfs" -b 4096 -noappend -quiet -no-progress >/dev/null 2>&1 \
        || rm -f "$seeds/good-program.sqfs"
    rm -rf "$t"
    touch "$seeds/.complete"
fi
echo "fuzzing $fuzzer for ${seconds}s: $(find "$seeds" -name "*.sqfs" | wc -l) seeds, $(find "$work/corpus" -type f | wc -l) inputs kept from earlier runs"
log=$work/fuzz.log
rc=0
# -fork with -ignore_*: one finding doesn't end the run (a seed may hold a
# known one), each is written to findings/ and the rest goes on.
"$fuzzer" -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=64 -rss_limit_mb=1024 \
    -max_len=262144 -print_final_stats=1 -close_fd_mask=1 \
    -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -artifact_prefix="$work/findings/" "$work/corpus" "$seeds" > "$log" 2>&1 || rc=$?
grep -E '^#[0-9]+: cov:' "$log" | tail -n 1 || true
findings=$(find "$work/findings" -type f | sort)
if ((rc != 0)) || [[ -n $findings ]]; then
    echo "fuzzing found something (exit $rc); inputs in $work/findings/, log in $log"
    # Each finding once more, alone: what it is and where (the first frames
    # in our code or in libsquashfs).
    for f in $findings; do
        echo "-- ${f##*/}:"
        "$fuzzer" -malloc_limit_mb=64 -rss_limit_mb=1024 -timeout=10 "$f" 2>&1 \
            | grep -E '==ERROR|ERROR: libFuzzer|SUMMARY|runtime error|#[0-9]+ .*(/lib/|libsquashfs)' \
            | sed -E 's/ \(BuildId[^)]*\)//; s/0x[0-9a-f]+ in //' | head -n 6
    done | head -n 200
    exit 1
fi
echo "fuzzing found nothing in ${seconds}s"

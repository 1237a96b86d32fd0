#!/bin/bash
# squash.sh [TREE [RUNS]]: time and peak memory of writing a directory tree as
# SquashFS with our sink (build/test/bench/squash_bench) and with mksquashfs,
# same compressor and block size, runs interleaved, best wall time of RUNS.
# Everything happens on tmpfs (/dev/shm): the disk here is mounted with
# discard, and this measures the writers, not the disk.
#
# Without TREE, builds one of ~300 MiB and ~35 000 files from /usr.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bench=${CH_SQUASH_BENCH:-$top/build/test/bench/squash_bench}
work=${CH_BENCH_DIR:-/dev/shm/ch-squash-bench}
tree=${1:-}
runs=${2:-3}
comp=${CH_BENCH_COMP:-gzip}
block=${CH_BENCH_BLOCK:-131072}

for p in mksquashfs /usr/bin/time "$bench"; do
    command -v "$p" >/dev/null || { echo "squash.sh: missing $p (make bench-tools; apt-get install squashfs-tools time)" >&2; exit 1; }
done
mkdir -p "$work"
if [[ -z $tree ]]; then
    tree=$work/tree
    if [[ ! -d $tree ]]; then
        mkdir -p "$tree/man"
        cp -a /usr/share/doc /usr/include /usr/lib/python3.11 "$tree/" 2>/dev/null || true
        cp -a /usr/share/man/man1 /usr/share/man/man3 /usr/share/man/man8 "$tree/man/" 2>/dev/null || true
    fi
fi
echo "tree: $tree: $(du -sm --apparent-size "$tree" | cut -f1) MiB, $(find "$tree" -type f | wc -l) files," \
     "$(find "$tree" | wc -l) entries; $comp, block size $block; $(nproc) CPUs"

# measure LABEL CMD...: prints "LABEL wall user sys maxrss_kib"
measure() {
    local label=$1; shift
    local log=$work/time.log
    /usr/bin/time -v -o "$log" "$@" >/dev/null 2>&1 || { echo "$label failed" >&2; cat "$log" >&2; exit 1; }
    local wall user sys rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$log")
    user=$(awk -F': ' '/User time/ {print $2}' "$log")
    sys=$(awk -F': ' '/System time/ {print $2}' "$log")
    rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$log")
    echo "$label $wall $user $sys $rss"
}

results=$work/results
: >"$results"
for ((i = 1; i <= runs; i++)); do
    rm -f "$work/ours.sqfs" "$work/mk.sqfs"
    measure ours "$bench" --comp "$comp" --block "$block" "$tree" "$work/ours.sqfs" | tee -a "$results"
    measure mksquashfs mksquashfs "$tree" "$work/mk.sqfs" -b "$block" -comp "$comp" -noappend -quiet -no-progress \
        | tee -a "$results"
done
echo "sizes: ours $(stat -c %s "$work/ours.sqfs") bytes, mksquashfs $(stat -c %s "$work/mk.sqfs") bytes"
awk '
    { if (!($1 in best) || $2 < best[$1]) { best[$1] = $2; cpu[$1] = $3 + $4 }
      if ($5 > rss[$1]) rss[$1] = $5 }
    END {
        for (k in best) printf "%-10s best wall %6.2f s, its CPU %6.2f s, peak RSS %7.1f MiB\n", k, best[k], cpu[k], rss[k] / 1024
        if (("ours" in best) && ("mksquashfs" in best))
            printf "ratio ours/mksquashfs: wall %.2f, peak RSS %.3f\n", best["ours"] / best["mksquashfs"], rss["ours"] / rss["mksquashfs"]
    }' "$results"

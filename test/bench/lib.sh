# lib.sh: helpers shared by the benchmarks in test/bench, sourced by run.sh
# and by each test/bench/<name>.sh. Nothing here asserts on timings: the
# benchmarks print figures, and ratios against a peer measured in the same
# run, interleaved, so that the load from other users of the machine hits
# both sides alike.
#
# Environment (all optional):
#   CH_BENCH_ROUNDS   measured rounds per comparison (default 300)
#   CH_BENCH_WARMUP   unmeasured rounds first (default 20)
#   CH_BENCH_USER     unprivileged user for the second pass when run as root
#                     (default chtest; created if missing)
#   CH_BENCH_DIR      work area, set by bench_init (a fresh directory on /dev/shm)
#   CH_BENCH_TIMEIT   the compiled test/bench/timeit.c, set by bench_init
# shellcheck shell=bash

bench_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CH_BENCH_ROUNDS=${CH_BENCH_ROUNDS:-300}
CH_BENCH_WARMUP=${CH_BENCH_WARMUP:-20}
CH_BENCH_USER=${CH_BENCH_USER:-chtest}

bench_die() {
    echo "bench: error: $*" >&2
    exit 1
}

bench_note() { echo "  note: $*"; }

# ---- work area and fixtures ---------------------------------------------------

# bench_init: create the work area (once per run: a benchmark started by
# run.sh inherits it) and compile timeit and mkfiles into it. The area is on
# tmpfs, so fixtures cost no disk I/O and vanish on reboot at worst; it is
# world-readable so the unprivileged pass can reach what is staged there.
# Every process that calls it gets the EXIT trap that runs bench_at_exit's
# actions; only the one that created the area removes it.
bench_init() {
    trap bench_exit EXIT
    trap 'exit 130' INT   # exit through the EXIT trap on ^C or kill too
    trap 'exit 143' TERM
    if [[ -n ${CH_BENCH_DIR:-} && -d $CH_BENCH_DIR ]]; then
        return 0
    fi
    local base=/dev/shm
    if [[ ! -d $base || ! -w $base ]]; then
        base=${TMPDIR:-/tmp}
        echo "bench: /dev/shm not usable; fixtures go to $base (not tmpfs: noisier)" >&2
    fi
    CH_BENCH_DIR=$(mktemp -d "$base/ch-bench.XXXXXX") || bench_die "can't create a work area in $base"
    chmod 0755 "$CH_BENCH_DIR"
    export CH_BENCH_DIR
    bench_at_exit bench_cleanup
    mkdir -p "$CH_BENCH_DIR/bin"
    CH_BENCH_TIMEIT=$(bench_compile timeit)
    export CH_BENCH_TIMEIT
}

# bench_compile NAME: compile test/bench/NAME.c into the work area's bin
# (once per run) and print the program's path.
bench_compile() {
    local out=$CH_BENCH_DIR/bin/$1
    if [[ ! -x $out ]]; then
        "${CC:-cc}" -O2 -Wall -Wextra -Werror -o "$out" "$bench_top/test/bench/$1.c" \
            || bench_die "can't compile test/bench/$1.c (is a C compiler installed?)"
        chmod 0755 "$out"
    fi
    echo "$out"
}

# bench_at_exit CMD: run CMD (a shell command) when this process exits,
# however it exits, after the actions registered before it.
bench_exit_actions=()
bench_at_exit() { bench_exit_actions+=("$1"); }

bench_exit() {
    local action
    for action in "${bench_exit_actions[@]}"; do
        eval "$action" || true
    done
}

# bench_cleanup: remove the work area. Registered by whoever called
# bench_init first, so fixtures are removed however the run ends.
bench_cleanup() {
    if [[ -n ${CH_BENCH_DIR:-} && -d $CH_BENCH_DIR ]]; then
        rm -rf "$CH_BENCH_DIR"
    fi
}

# bench_stage SRC NAME: copy a file or directory into the work area, readable
# and (where it was) executable by everyone; prints the staged path.
bench_stage() {
    local src=$1 dst=$CH_BENCH_DIR/$2
    mkdir -p "$(dirname "$dst")"
    rm -rf "$dst"
    cp -a "$src" "$dst" || bench_die "can't stage $src"
    chmod -R a+rX "$dst"
    echo "$dst"
}

# bench_ch_runs: the two ch-run binaries compared, from CH_BENCH_OURS (default
# bin/ch-run) and CH_BENCH_PEER (default /usr/bin/ch-run). Sets ours_src,
# peer, ours (ours staged where the unprivileged pass can run it) and
# peer_version.
# shellcheck disable=SC2034 # the benchmark scripts use what it sets
bench_ch_runs() {
    ours_src=${CH_BENCH_OURS:-$bench_top/bin/ch-run}
    peer=${CH_BENCH_PEER:-/usr/bin/ch-run}
    [[ -x $ours_src ]] || bench_die "$ours_src not found (run make first)"
    [[ -x $peer ]] || bench_die "$peer not found (install charliecloud-runtime)"
    ours=$(bench_stage "$ours_src" bin/ch-run)
    peer_version=$(bench_as "$(id -un)" "$peer" --version 2>&1 | tail -n 1 || true)
}

# bench_row FILE NAME LABEL: one table row for NAME's results in FILE, wall
# time median, p10 and p90, and CPU median.
bench_row() {
    local w c
    read -r -a w < <(bench_values "$1" "$2" wall | bench_quantiles)
    c=$(bench_values "$1" "$2" cpu | bench_median)
    bench_fmt '  %-26s %8.3f %8.3f %8.3f %9.3f\n' "$3" "${w[0]}" "${w[1]}" "${w[2]}" "$c"
}

# bench_fuse_open: as root, make /dev/fuse usable by everyone (0666, as
# Debian's udev rules make it) until this process exits, when its mode is
# restored; SquashFS images need it. Prints a line if it changed anything.
bench_fuse_open() {
    local mode
    [[ $(id -u) -eq 0 ]] || return 0
    mode=$(stat -c %a /dev/fuse 2>/dev/null) || bench_die "no /dev/fuse (modprobe fuse?)"
    [[ $mode != 666 ]] || return 0
    bench_at_exit "chmod $mode /dev/fuse && echo '  restored /dev/fuse to mode $mode'"
    chmod 0666 /dev/fuse || bench_die "can't chmod /dev/fuse"
    echo "  set /dev/fuse to mode 0666 for this benchmark (was $mode)"
}

# ---- who runs the commands ------------------------------------------------------

# bench_users: the users each benchmark runs as, one a line: the invoking
# user, plus CH_BENCH_USER when that is root (created if missing).
bench_users() {
    id -un
    if [[ $(id -u) -eq 0 ]]; then
        if ! id "$CH_BENCH_USER" >/dev/null 2>&1; then
            useradd --create-home --shell /bin/bash "$CH_BENCH_USER" >/dev/null \
                || bench_die "can't create user $CH_BENCH_USER"
            echo "bench: created user $CH_BENCH_USER" >&2
        fi
        echo "$CH_BENCH_USER"
    fi
}

# bench_as USER CMD...: run CMD as USER with the same small environment
# whoever USER is, so both passes (and both tools) see the same variables.
# Charliecloud 0.31 refuses to start without $USER. The working directory is
# the work area: the build tree may not be readable by USER.
bench_as() {
    local user=$1; shift
    local home
    home=$(getent passwd "$user" | cut -d: -f6)
    local envs=(HOME="${home:-/}" USER="$user" LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin)
    if [[ $user == "$(id -un)" ]]; then
        (cd "$CH_BENCH_DIR" && env -i "${envs[@]}" "$@")
    else
        (cd "$CH_BENCH_DIR" && runuser -u "$user" -- env -i "${envs[@]}" "$@")
    fi
}

# ---- measuring ---------------------------------------------------------------------

# bench_timeit USER OUT [-r ROUNDS] [-w WARMUP] [-b SHELL-CMD] -- NAME CMD...
# [:: NAME CMD...]...: run the commands round-robin, every other round in
# reverse (WARMUP + ROUNDS rounds; default CH_BENCH_WARMUP and
# CH_BENCH_ROUNDS) as USER, writing timeit's samples (NAME ROUND WALL_NS
# UTIME_US STIME_US MAXRSS_KB) to OUT. With -b, SHELL-CMD runs untimed before
# every run (e.g. to remove the last output).
bench_timeit() {
    local user=$1 out=$2 rounds=$CH_BENCH_ROUNDS warmup=$CH_BENCH_WARMUP before=()
    shift 2
    while [[ $1 != -- ]]; do
        case $1 in
            -r) rounds=$2 ;;
            -w) warmup=$2 ;;
            -b) before=(-b "$2") ;;
            *) bench_die "bench_timeit: bad option $1" ;;
        esac
        shift 2
    done
    shift
    bench_as "$user" "$CH_BENCH_TIMEIT" "$rounds" "$warmup" "${before[@]}" -- "$@" >"$out"
}

# bench_values FILE NAME MEASURE: one value a line, in round order, for the
# samples of NAME. MEASURE: wall (ms), cpu (user+system ms) or rss (KiB).
bench_values() {
    awk -v n="$2" -v m="$3" '$1 == n {
        if (m == "wall") print $3 / 1e6
        else if (m == "cpu") print ($4 + $5) / 1e3
        else print $6 }' "$1"
}

# bench_paired FILE A B MEASURE ratio|diff: per-round A/B or A-B, pairing the
# runs of the same round, so slow drift of the machine's load cancels.
bench_paired() {
    awk -v a="$2" -v b="$3" -v m="$4" -v op="$5" '
        function v() { return m == "wall" ? $3 / 1e6 : ($4 + $5) / 1e3 }
        $1 == a { va[$2] = v() }
        $1 == b { vb[$2] = v() }
        END {
            for (r = 0; r in va; r++)
                if (r in vb) print (op == "ratio" ? va[r] / vb[r] : va[r] - vb[r])
        }' "$1"
}

# bench_quantiles: read numbers on stdin; print "MEDIAN P10 P90" (linear
# interpolation between ranks). p10 and p90 show the spread without letting a
# few descheduled runs dominate it, as a standard deviation would.
bench_quantiles() {
    sort -g | awk '
        { v[NR] = $1 }
        function q(p,   h, lo) {
            h = (NR - 1) * p + 1; lo = int(h)
            return lo >= NR ? v[NR] : v[lo] + (h - lo) * (v[lo + 1] - v[lo])
        }
        END {
            if (NR == 0) { print "nan nan nan"; exit }
            printf "%.6g %.6g %.6g\n", q(0.5), q(0.1), q(0.9)
        }'
}

# bench_min: read numbers on stdin; print the smallest (best-of).
bench_min() { sort -g | head -n 1; }

# bench_median: read numbers on stdin; print the median.
bench_median() { bench_quantiles | cut -d' ' -f1; }

# bench_peak_rss_kb USER N CMD...: peak resident set size of CMD run as USER,
# in KiB, as GNU time reports it (%M, from wait4; a command that execs counts
# the largest of its images). Median of N runs; CMD's output is discarded.
bench_peak_rss_kb() {
    local user=$1 n=$2; shift 2
    local i out kbs=()
    for ((i = 0; i < n; i++)); do
        # time(1) prints %M on stderr once CMD has exited: the last line.
        out=$(bench_as "$user" /usr/bin/time -f %M "$@" 2>&1 >/dev/null) || return 1
        kbs+=("${out##*$'\n'}")
    done
    printf '%s\n' "${kbs[@]}" | bench_median
}

# ---- printing ---------------------------------------------------------------------

bench_indent() { sed 's/^/    /'; }

bench_header() { printf '\n==== %s ====\n' "$*"; }

# bench_verdict VALUE LIMIT: PASS if VALUE <= LIMIT, else MISS.
bench_verdict() {
    awk -v v="$1" -v l="$2" 'BEGIN { print (v <= l ? "PASS" : "MISS") }'
}

# bench_div A B: A / B (a float), or nan if B is 0 or either is missing.
bench_div() {
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "nan"; else printf "%.6g\n", a / b }'
}

# bench_fmt FORMAT ARG...: printf in the C locale, so "%.3f" reads and
# writes a decimal point whatever the user's locale.
bench_fmt() {
    local fmt=$1; shift
    # shellcheck disable=SC2059 # the format is the caller's, by design
    LC_ALL=C printf "$fmt" "$@"
}

# bench_summary LINE: record a one-line result; run.sh prints them all at the end.
bench_summary() {
    echo "$*" >>"$CH_BENCH_DIR/summary"
}

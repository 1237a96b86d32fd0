#!/bin/bash
# shellcheck disable=SC2154 # the reg_* variables come from the registry fixtures' env file
# pull.sh: pulling the registry fixtures' multi-layer image (img/multi: about
# 30 000 files, 410 MB unpacked, 220 MB of gzip layers; built once per
# machine by test/integration/fixtures/registry.sh and kept in
# /var/tmp/ch-test-cache) from a local docker-registry over HTTPS (certificate
# verified by both sides, against the fixtures' CA), into empty storage on
# tmpfs:
#   ours           bin/ch-image pull (plus the zstd variant, img/multi-zstd)
#   charliecloud   Charliecloud 0.31's `ch-image --no-cache pull`
#   skopeo+umoci   `skopeo copy docker://... oci:DIR` then
#                  `umoci raw unpack --rootless`
# then registry -> SquashFS in one pass (ours: `ch-image pull --output
# FILE.sqfs`) against Charliecloud's pull followed by its ch-convert to
# SquashFS, and a second pull of an image already in storage (ours).
# Each comparison runs round-robin in one timeit (CH_BENCH_PULL_ROUNDS
# rounds, default 3, after one warm-up round), as the unprivileged user
# (CH_BENCH_USER when run as root), as people pull; the storage is emptied
# before every run, untimed. Peak RSS is /usr/bin/time's %M (the largest
# process of the run: Charliecloud's work is one Python process plus tar).
#
# Goals (informational):
#   ours / the faster peer <= 0.4 (best of rounds and median), peak RSS <= 64 MiB;
#   ours zstd <= ours gzip;
#   ours registry -> squash / charliecloud pull + ch-convert <= 0.5, RSS <= 64 MiB;
#   second pull < 0.3 s.
# Until bin/ch-image exists the peers are still measured and ours is skipped.
#
# Environment: CH_BENCH_CH_IMAGE (default bin/ch-image), CH_BENCH_PEER_IMAGE
# (default /usr/bin/ch-image), CH_BENCH_PULL_ROUNDS, and lib.sh's.
set -euo pipefail
# shellcheck source=test/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

goal_ratio=0.40
goal_squash=0.50
goal_rss_kib=65536
goal_second_s=0.30
rounds=${CH_BENCH_PULL_ROUNDS:-3}

ours_src=${CH_BENCH_CH_IMAGE:-$bench_top/bin/ch-image}
peer=${CH_BENCH_PEER_IMAGE:-/usr/bin/ch-image}
peer_convert=/usr/bin/ch-convert
for c in skopeo umoci docker-registry "$peer" "$peer_convert"; do
    command -v "$c" >/dev/null || bench_die "$c not found (test/setup/install-deps.sh bench)"
done
have_ours=yes
if [[ ! -x $ours_src ]]; then
    have_ours=no
fi

# ---- the registry ------------------------------------------------------------------
# Its own instance in the work area (not the test suites'), stopped at exit.
registry_sh=$bench_top/test/integration/fixtures/registry.sh
export CH_REG_DIR=$CH_BENCH_DIR/registry CH_REG_BIG=yes
bash "$registry_sh" build | bench_indent
bench_at_exit "bash '$registry_sh' stop"
bash "$registry_sh" start | bench_indent
chmod -R a+rX "$CH_REG_DIR"
# shellcheck disable=SC1091
source "$CH_REG_DIR/env"
ref=$reg_tls/img/multi:latest
ref_zstd=$reg_tls/img/multi-zstd:latest

user=$(bench_users | tail -n 1)
work=$CH_BENCH_DIR/pull.$user
rm -rf "$work"
mkdir -p "$work/certs"
cp "$reg_ca" "$work/certs/ca.crt"     # skopeo's --src-cert-dir wants *.crt
printf 'registry:\n  ca-file: %s\n' "$reg_ca" > "$work/config.yaml"
chown -R "$user" "$work"
chmod -R a+rX "$work"
peer_version=$(bench_as "$user" "$peer" --version 2>&1 | tail -n 1 || true)

# The commands, each a full argv for bench_as / timeit. Both ch-images find
# the CA through their own means: ours its configuration file, Charliecloud
# requests' REQUESTS_CA_BUNDLE.
ours_env=(env CH_CONFIG_USER="$work/config.yaml" CH_CONFIG_SITE=/nonexistent)
cmd_ours=("${ours_env[@]}" "$CH_BENCH_DIR/bin/ch-image" -q -s "$work/s-ours" pull "$ref")
cmd_zstd=("${ours_env[@]}" "$CH_BENCH_DIR/bin/ch-image" -q -s "$work/s-zstd" pull "$ref_zstd")
cmd_sq_ours=("${ours_env[@]}" "$CH_BENCH_DIR/bin/ch-image" -q -s "$work/s-sq-ours" pull
             --output "$work/ours.sqfs" "$ref")
cmd_cc=(env REQUESTS_CA_BUNDLE="$reg_ca" "$peer" --no-cache -s "$work/s-cc" pull "$ref")
cmd_so=(sh -c "skopeo copy -q --src-cert-dir '$work/certs' 'docker://$ref' 'oci:$work/oci:latest' \
                && umoci raw unpack --rootless --image '$work/oci:latest' '$work/umoci-root'")
cmd_sq_cc=(sh -c "REQUESTS_CA_BUNDLE='$reg_ca' '$peer' --no-cache -s '$work/s-sqcc' pull '$ref' \
                && CH_IMAGE_STORAGE='$work/s-sqcc' '$peer_convert' -i ch-image -o squash \
                   '$reg_tls/img/multi:latest' '$work/cc.sqfs'")
clean="rm -rf '$work'/s-* '$work/oci' '$work/umoci-root' '$work'/*.sqfs"

bench_header "pull: registry -> storage on tmpfs, as $user (uid $(id -u "$user"))"
echo "  image:  $ref: $reg_layers_multi layers, $(bench_fmt '%.0f' "$(bench_div "$reg_packed_multi" 1e6)") MB" \
     "packed, $(bench_fmt '%.0f' "$(bench_div "$reg_unpacked_multi" 1e6)") MB unpacked," \
     "$(grep -c $'\tf\t' "$reg_expected/multi.listing") files; zstd variant $(bench_fmt '%.0f' \
     "$(bench_div "$reg_packed_multi_zstd" 1e6)") MB packed"
echo "  ours:   $ours_src$([[ $have_ours == no ]] && echo ' (not built: skipped)')"
echo "  peers:  $peer (Charliecloud $peer_version); skopeo $(skopeo --version | awk '{print $3}')" \
     "+ umoci $(umoci --version | awk '{print $3}')"
[[ $peer_version == 0.31* ]] \
    || bench_note "$peer reports version '$peer_version', not 0.31: the goals were set against 0.31"
[[ $have_ours == yes ]] && bench_stage "$ours_src" bin/ch-image >/dev/null

# check NAME CMD...: one untimed run, which must succeed; its stderr is shown
# if not. Returns non-zero on failure.
check() {
    local name=$1 rc=0 err; shift
    bash -c "$clean"
    err=$(bench_as "$user" "$@" 2>&1 >/dev/null) || rc=$?
    if ((rc != 0)); then
        echo "  $name can't pull as $user (exit $rc)"
        bench_indent <<<"$(tail -n 5 <<<"$err")"
        return 1
    fi
}

# Same work: the unpacked trees agree with the image's expected listing
# (under data/, where the whiteouts and the opaque directory are).
listing() { # listing DIR
    python3 - "$1" <<'EOF'
import hashlib, os, stat, sys
root = sys.argv[1]
for d, dirs, files in os.walk(os.path.join(root, "data")):
    for n in sorted(dirs + files):
        p = os.path.join(d, n); rel = os.path.relpath(p, root); st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode): print("%s\tl\t%s" % (rel, os.readlink(p)))
        elif stat.S_ISDIR(st.st_mode): print("%s\td\t-" % rel)
        else: print("%s\tf\t%s" % (rel, hashlib.sha256(open(p, "rb").read()).hexdigest()))
EOF
}
same_tree() { # same_tree NAME DIR
    if [[ ! -d $2/data ]]; then
        bench_note "$1: no data/ in $2"
        return 0
    fi
    if diff <(awk -F'\t' 'index($1, "data/") == 1' "$reg_expected/multi.listing") \
            <(listing "$2" | sort) >/dev/null; then
        echo "  $1: tree matches the image's expected listing under data/"
    else
        bench_note "$1: tree differs from the image's expected listing under data/"
    fi
}

tools=()
cmds=()
add() { # add NAME CMD...: include NAME if its check run succeeds
    local name=$1; shift
    check "$name" "$@" || return 1
    tools+=("$name")
    ((${#cmds[@]} == 0)) || cmds+=(::)
    cmds+=("$name" "$@")
}
failed=0
add charliecloud "${cmd_cc[@]}" && same_tree charliecloud "$(find "$work/s-cc/img" -mindepth 1 -maxdepth 1 | head -n 1)"
add skopeo+umoci "${cmd_so[@]}" && same_tree skopeo+umoci "$work/umoci-root"
if [[ $have_ours == yes ]]; then
    add ours "${cmd_ours[@]}" && same_tree ours "$(find "$work/s-ours/img" -mindepth 1 -maxdepth 1 | head -n 1)"
    add ours-zstd "${cmd_zstd[@]}"
fi
bash -c "$clean"
((${#tools[@]} > 0)) || { bench_summary "pull as $user: FAILED to run"; exit 1; }

# rss NAME CMD...: peak RSS (KiB) of one run.
declare -A rss
measure_rss() {
    local name=$1; shift
    bash -c "$clean"
    rss[$name]=$(bench_peak_rss_kb "$user" 1 "$@" || echo nan)
}
for name in "${tools[@]}"; do
    case $name in
        ours) measure_rss ours "${cmd_ours[@]}" ;;
        ours-zstd) measure_rss ours-zstd "${cmd_zstd[@]}" ;;
        charliecloud) measure_rss charliecloud "${cmd_cc[@]}" ;;
        skopeo+umoci) measure_rss skopeo+umoci "${cmd_so[@]}" ;;
    esac
done
bash -c "$clean"

out=$CH_BENCH_DIR/pull.tsv
t0=$SECONDS
bench_timeit "$user" "$out" -r "$rounds" -w 1 -b "$clean" -- "${cmds[@]}" \
    || { bench_summary "pull as $user: FAILED during timing"; exit 1; }
echo "  $rounds rounds after 1 warm-up, interleaved, in $((SECONDS - t0)) s; load average" \
     "$(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"

best_s() { bench_div "$(bench_values "$out" "$1" wall | bench_min)" 1000; }
row() { # row NAME
    local w c
    read -r -a w < <(bench_values "$out" "$1" wall | bench_quantiles)
    c=$(bench_values "$out" "$1" cpu | bench_median)
    bench_fmt '  %-22s %8.3f %8.3f %9.3f %9.1f\n' "$1" "$(best_s "$1")" "$(bench_div "${w[0]}" 1000)" \
        "$(bench_div "$c" 1000)" "$(bench_div "${rss[$1]:-nan}" 1024)"
}
bench_fmt '  %-22s %8s %8s %9s %9s\n' seconds best median "cpu med." "RSS MiB"
for name in "${tools[@]}"; do row "$name"; done

if [[ " ${tools[*]} " == *" ours "* ]]; then
    fastest='' fastest_s=''
    for peer_name in charliecloud skopeo+umoci; do
        [[ " ${tools[*]} " == *" $peer_name "* ]] || continue
        s=$(best_s "$peer_name")
        if [[ -z $fastest ]] || awk -v a="$s" -v b="$fastest_s" 'BEGIN { exit !(a < b) }'; then
            fastest=$peer_name fastest_s=$s
        fi
    done
    if [[ -n $fastest ]]; then
        r_best=$(bench_div "$(best_s ours)" "$fastest_s")
        r_med=$(bench_paired "$out" ours "$fastest" wall ratio | bench_median)
        v=$(bench_verdict "$r_best" "$goal_ratio")
        vm=$(bench_verdict "${rss[ours]:-1e9}" "$goal_rss_kib")
        bench_fmt '  ours / %s (the faster peer): best %.3f, median of rounds %.3f  goal <= %.2f  %s;' \
            "$fastest" "$r_best" "$r_med" "$goal_ratio" "$v"
        bench_fmt ' peak RSS %.1f MiB (<= 64) %s\n' "$(bench_div "${rss[ours]:-nan}" 1024)" "$vm"
        bench_summary "$(bench_fmt 'pull     as %-7s ours/%s %.3f %s, RSS %.1f MiB %s' "$user" "$fastest" \
            "$r_best" "$v" "$(bench_div "${rss[ours]:-nan}" 1024)" "$vm")"
        # CPU time (all processes of a run) is what a loaded machine
        # disturbs least: compare it too.
        for peer_name in charliecloud skopeo+umoci; do
            [[ " ${tools[*]} " == *" $peer_name "* ]] || continue
            bench_fmt '    ours / %-13s wall best %.3f, cpu median %.3f\n' "$peer_name" \
                "$(bench_div "$(best_s ours)" "$(best_s "$peer_name")")" \
                "$(bench_paired "$out" ours "$peer_name" cpu ratio | bench_median)"
        done
    fi
    if [[ " ${tools[*]} " == *" ours-zstd "* ]]; then
        rz=$(bench_div "$(best_s ours-zstd)" "$(best_s ours)")
        v=$(bench_verdict "$rz" 1.0)
        bench_fmt '  ours zstd / ours gzip: best %.3f  goal <= 1  %s\n' "$rz" "$v"
        bench_summary "$(bench_fmt 'pull     as %-7s ours zstd/gzip %.3f %s' "$user" "$rz" "$v")"
    fi
else
    bench_note "ours not measured: the peers' figures stand alone"
fi

# ---- registry -> SquashFS --------------------------------------------------------------
bench_header "pull: registry -> SquashFS file, as $user"
sq_tools=() sq_cmds=()
if check charliecloud "${cmd_sq_cc[@]}"; then
    sq_tools+=(charliecloud)
    sq_cmds+=(charliecloud "${cmd_sq_cc[@]}")
    bash -c "$clean"
    rss[sq-charliecloud]=$(bench_peak_rss_kb "$user" 1 "${cmd_sq_cc[@]}" || echo nan)
fi
if [[ $have_ours == yes ]]; then
    if check ours "${cmd_sq_ours[@]}"; then
        sq_tools+=(ours)
        ((${#sq_cmds[@]} == 0)) || sq_cmds+=(::)
        sq_cmds+=(ours "${cmd_sq_ours[@]}")
        bash -c "$clean"
        rss[sq-ours]=$(bench_peak_rss_kb "$user" 1 "${cmd_sq_ours[@]}" || echo nan)
        if [[ -d $work/s-sq-ours/img ]] && [[ -n $(ls -A "$work/s-sq-ours/img") ]]; then
            bench_note "ours left an unpacked image in storage: not one pass"
        fi
    else
        bench_note "ours: 'ch-image pull --output FILE.sqfs' failed (not implemented yet?)"
    fi
fi
bash -c "$clean"
if ((${#sq_cmds[@]} > 0)); then
    out=$CH_BENCH_DIR/pull-squash.tsv
    bench_timeit "$user" "$out" -r "$rounds" -w 1 -b "$clean" -- "${sq_cmds[@]}" \
        || { bench_summary "pull squash as $user: FAILED during timing"; failed=1; }
    bench_fmt '  %-22s %8s %8s %9s %9s\n' seconds best median "cpu med." "RSS MiB"
    rss[charliecloud]=${rss[sq-charliecloud]:-nan}
    rss[ours]=${rss[sq-ours]:-nan}
    for name in "${sq_tools[@]}"; do row "$name"; done
    if [[ " ${sq_tools[*]} " == *" ours "* && " ${sq_tools[*]} " == *" charliecloud "* ]]; then
        r=$(bench_div "$(best_s ours)" "$(best_s charliecloud)")
        v=$(bench_verdict "$r" "$goal_squash")
        vm=$(bench_verdict "${rss[sq-ours]:-1e9}" "$goal_rss_kib")
        bench_fmt '  ours / charliecloud (pull + ch-convert): best %.3f  goal <= %.2f  %s; peak RSS %.1f MiB %s\n' \
            "$r" "$goal_squash" "$v" "$(bench_div "${rss[sq-ours]}" 1024)" "$vm"
        bench_fmt '    cpu median %.3f\n' "$(bench_paired "$out" ours charliecloud cpu ratio | bench_median)"
        bench_summary "$(bench_fmt 'pull     as %-7s ours/charliecloud registry->squash %.3f %s, RSS %s' \
            "$user" "$r" "$v" "$vm")"
    fi
fi

# ---- second pull ------------------------------------------------------------------------
if [[ $have_ours == yes ]] && check ours "${cmd_ours[@]}"; then
    bench_header "pull: second pull of the same image (already in storage), as $user"
    out=$CH_BENCH_DIR/pull-again.tsv
    bench_timeit "$user" "$out" -r 10 -w 2 -- ours "${cmd_ours[@]}" \
        || { bench_summary "pull again as $user: FAILED during timing"; failed=1; }
    read -r -a w < <(bench_values "$out" ours wall | bench_quantiles)
    s=$(bench_div "${w[0]}" 1000)
    v=$(bench_verdict "$s" "$goal_second_s")
    bench_fmt '  second pull: median %.3f s (p10 %.3f, p90 %.3f) over 10 runs  goal < %.2f s  %s\n' \
        "$s" "$(bench_div "${w[1]}" 1000)" "$(bench_div "${w[2]}" 1000)" "$goal_second_s" "$v"
    bench_summary "$(bench_fmt 'pull     as %-7s second pull %.3f s %s' "$user" "$s" "$v")"
fi
bash -c "$clean"
exit "$failed"

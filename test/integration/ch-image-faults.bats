# ch-image-faults.bats: `ch-image pull` when things go wrong, against the real
# registries of fixtures/registry.sh: an altered blob, SIGKILL mid-transfer,
# the registry stopped mid-transfer, two pulls at once, a full disk, and a
# 429 with Retry-After. The misbehaviour comes from the fixtures' fault proxy
# (registry-proxy.py) in front of a real docker-registry, never a mock.
#
# Storage: each test's own ($CH_IMAGE_STORAGE, from common.bash). A pulled
# image is STORAGE/img/NAME; blobs are STORAGE/dlcache/sha256-HEX once
# checked, dlcache/part-sha256-HEX while partial; staging debris is
# .NAME.ch-staging.PID.SERIAL (lib/storage/publish.hh).
load common
load fixtures/registry-lib

setup_file() {
    [[ -x $ch_bin/ch-image ]] || skip "ch-image not built"
    reg_setup_file
}
teardown_file() { reg_teardown_file; }
setup() {
    [[ -x $ch_bin/ch-image ]] || skip "ch-image not built"
    reg_load
    pulls=()
}
teardown() {
    local p
    for p in "${pulls[@]}"; do
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    reg_proxy_stop
    reg_private_stop
    if [[ -n ${full_mnt:-} ]] && mountpoint -q "$full_mnt"; then
        umount "$full_mnt" || umount -l "$full_mnt"
    fi
}

# pull HOST REPO [ARG...]: ch-image pull HOST/REPO from a plain-HTTP
# registry (the proxy or the test's own), as people would.
pull() {
    local host=$1 repo=$2; shift 2
    timeout 300 "$ch_bin/ch-image" pull --insecure "$host" "$@" "$host/$repo"
}

# no_image_published: nothing visible in storage: ch-image lists no image,
# img/ holds nothing (not even staging debris once a later command swept it),
# and no staging debris anywhere in storage.
no_image_published() {
    local s=$CH_IMAGE_STORAGE
    run "$ch_bin/ch-image" list
    assert_status 0
    if [[ -n $output ]]; then
        printf 'ch-image list shows images:\n%s\n' "$output" >&2
        return 1
    fi
    if [[ -d $s/img ]]; then
        local left
        left=$(find "$s/img" -mindepth 1 -maxdepth 1 ! -name '.*.ch-staging.*')
        [[ -z $left ]] || { printf 'published in img/:\n%s\n' "$left" >&2; return 1; }
    fi
}

# no_debris: no staging entries and no partial blobs left in storage.
no_debris() {
    local d
    d=$(find "$CH_IMAGE_STORAGE" -name '.*.ch-staging.*' -o -name 'part-sha256-*' 2>/dev/null)
    [[ -z $d ]] || { printf 'debris left:\n%s\n' "$d" >&2; return 1; }
}

# image_dir NAME: where storage keeps image NAME (Charliecloud's mapping:
# / as %, : as +).
image_dir() {
    local n=${1//\//%}
    echo "$CH_IMAGE_STORAGE/img/${n//:/+}"
}

# same_data NAME IMAGE: the pulled image's data/ is the expected one.
same_data() {
    diff <(reg_expected_listing "$1" data) <(reg_listing "$2" data)
}

# cached_blobs: the finished blobs in the cache, one digest a line.
cached_blobs() {
    find "$CH_IMAGE_STORAGE/dlcache" -maxdepth 1 -name 'sha256-*' -printf '%f\n' 2>/dev/null \
        | sed 's/^sha256-/sha256:/' | sort
}

@test "faults: an altered blob is refused, named, and nothing is published" {
    run pull "$reg_http" img/altered
    [[ $status -ne 0 && $status -lt 124 ]] || { echo "status $status: $output" >&2; return 1; }
    assert_output_has "digest"
    assert_output_has "${reg_altered_layer:7:12}"
    [[ $(wc -l <<<"$output") -le 3 ]] || { echo "a clear error is short: $output" >&2; return 1; }
    no_image_published
    no_debris
    # The bad bytes never enter the cache under the digest they don't have.
    [[ ! -e $CH_IMAGE_STORAGE/dlcache/sha256-${reg_altered_layer#sha256:} ]]
    # And again: refused again, not served from anywhere.
    run pull "$reg_http" img/altered
    [[ $status -ne 0 ]]
    no_image_published
}

@test "faults: SIGKILL during a transfer, then a re-pull reuses the finished blobs" {
    # Layers at 2 MB/s (12 MB in all): the kill lands mid-transfer.
    reg_proxy_start "http://$reg_http" \
        '{"rules": [{"match": "GET /v2/img/multi-small/blobs/", "action": "slow", "rate": 2000000}]}'
    "$ch_bin/ch-image" pull --insecure "$reg_proxy" "$reg_proxy/img/multi-small" \
        > "$BATS_TEST_TMPDIR/out1" 2>&1 3>&- &
    pulls+=($!)
    # Wait for a first finished layer, then kill while the others still flow.
    wait_until 60 bash -c "[[ \$(find '$CH_IMAGE_STORAGE/dlcache' -name 'sha256-*' -size +100k 2>/dev/null) ]]" \
        || { cat "$BATS_TEST_TMPDIR/out1" >&2; echo "no layer finished in 60 s" >&2; return 1; }
    kill -9 "${pulls[0]}"
    wait "${pulls[0]}" 2>/dev/null || true
    local before
    before=$(cached_blobs)
    [[ -n $before ]]
    # A transfer was cut: not every layer made it.
    [[ $(wc -l <<<"$before") -lt $((reg_layers_multi_small + 1)) ]]
    no_image_published

    # Full speed now; the re-pull fetches only what was missing.
    printf '{}\n' > "$reg_proxy_control"
    : > "$reg_proxy_log"
    run pull "$reg_proxy" img/multi-small
    assert_status 0
    local d
    for d in $before; do
        [[ $(reg_proxy_count "GET /v2/img/multi-small/blobs/$d") == 0 ]] \
            || { echo "blob $d was fetched again" >&2; cat "$reg_proxy_log" >&2; return 1; }
    done
    no_debris
    run "$ch_bin/ch-image" list
    assert_output_has "$reg_proxy/img/multi-small"
    same_data multi-small "$(image_dir "$reg_proxy/img/multi-small")"
    ch-run "$reg_proxy/img/multi-small" -- /bin/true
}

@test "faults: the registry stopped mid-transfer gives a clear error and no image" {
    reg_private_start
    reg_proxy_start "http://$reg_private" \
        '{"rules": [{"match": "GET /v2/img/multi-small/blobs/", "action": "slow", "rate": 1000000}]}'
    "$ch_bin/ch-image" pull --insecure "$reg_proxy" "$reg_proxy/img/multi-small" \
        > "$BATS_TEST_TMPDIR/out" 2>&1 3>&- &
    pulls+=($!)
    # Mid-transfer: the config has come (the proxy logs a request once it
    # is answered), the layers are flowing.
    wait_until 60 bash -c "grep -q '/blobs/' '$reg_proxy_log'" \
        || { cat "$BATS_TEST_TMPDIR/out" >&2; return 1; }
    sleep 1
    # The registry goes away: its process and the address clients use.
    reg_private_stop
    kill -9 "$reg_proxy_pid"
    wait "$reg_proxy_pid" 2>/dev/null || true
    reg_proxy_pid=
    local rc=0
    wait_until 240 bash -c "! kill -0 ${pulls[0]} 2>/dev/null" \
        || { echo "the pull still runs 240 s after the registry stopped" >&2; return 1; }
    wait "${pulls[0]}" || rc=$?
    output=$(cat "$BATS_TEST_TMPDIR/out")
    [[ $rc -ne 0 && $rc -lt 128 ]] || { echo "status $rc: $output" >&2; return 1; }
    # The last line is the error: it names the registry and what happened.
    local last=${output##*$'\n'}
    [[ $last == *warning* ]] && last=$(grep -v -i 'warning' <<<"$output" | tail -n 1)
    [[ $last == *"$reg_proxy"* && $last == *unreachable* ]] \
        || { echo "the error doesn't say the registry went away: $last" >&2; return 1; }
    assert_output_lacks "terminate called"
    assert_output_lacks "Sanitizer"
    no_image_published
}

@test "faults: two pulls of the same image at once both succeed, one consistent image" {
    local out1=$BATS_TEST_TMPDIR/out1 out2=$BATS_TEST_TMPDIR/out2 rc1=0 rc2=0
    "$ch_bin/ch-image" pull --insecure "$reg_http" "$reg_http/img/multi-small" > "$out1" 2>&1 3>&- &
    pulls+=($!)
    "$ch_bin/ch-image" pull --insecure "$reg_http" "$reg_http/img/multi-small" > "$out2" 2>&1 3>&- &
    pulls+=($!)
    wait "${pulls[0]}" || rc1=$?
    wait "${pulls[1]}" || rc2=$?
    [[ $rc1 -eq 0 && $rc2 -eq 0 ]] \
        || { echo "exit $rc1 and $rc2:"; cat "$out1" "$out2"; return 1; } >&2
    run "$ch_bin/ch-image" list
    assert_status 0
    [[ $output == "$reg_http/img/multi-small" ]] || { echo "list: $output" >&2; return 1; }
    no_debris
    same_data multi-small "$(image_dir "$reg_http/img/multi-small")"
    ch-run "$reg_http/img/multi-small" -- /bin/true
}

@test "faults: a full disk gives a clear error and leaves nothing half-written" {
    # 20 MiB of tmpfs; the image needs 12 MB of blobs plus 16 MB unpacked.
    if as_root; then
        full_mnt=$BATS_TEST_TMPDIR/full
        mkdir "$full_mnt"
        mount -t tmpfs -o size=20m,mode=0755 tmpfs "$full_mnt" || skip_env "can't mount a tmpfs"
        export CH_IMAGE_STORAGE=$full_mnt/storage
    else
        # Made by test/setup/stage.sh as root, owned by this user.
        local m=$reg_test_root/tmpfs-20m
        mountpoint -q "$m" && [[ -O $m ]] || skip_env "no 20 MiB tmpfs of ours at $m (stage.sh makes it as root)"
        export CH_IMAGE_STORAGE=$m/storage-$$
        rm -rf "$CH_IMAGE_STORAGE"
    fi
    run pull "$reg_http" img/multi-small
    [[ $status -ne 0 && $status -lt 124 ]] || { echo "status $status: $output" >&2; return 1; }
    [[ $output == *"disk full"* || $output == *"No space left"* ]] \
        || { echo "not a disk-full error: $output" >&2; return 1; }
    [[ $(wc -l <<<"$output") -le 3 ]] || { echo "a clear error is short: $output" >&2; return 1; }
    no_image_published
    no_debris
    # Whatever is left is finished blobs, each whole and correct.
    local f
    for f in "$CH_IMAGE_STORAGE"/dlcache/sha256-*; do
        [[ -e $f ]] || continue
        [[ $(sha256sum "$f" | cut -d' ' -f1) == "${f##*/sha256-}" ]] \
            || { echo "$f doesn't match its name" >&2; return 1; }
    done
    as_root || rm -rf "$CH_IMAGE_STORAGE"
}

@test "faults: 429 with Retry-After is honoured, then the pull succeeds" {
    reg_proxy_start "http://$reg_http" '{"rules": [
        {"match": "GET /v2/img/onelayer/manifests/", "count": 1, "action": "429", "retry_after": 2},
        {"match": "GET /v2/img/onelayer/blobs/", "count": 1, "action": "429", "retry_after": 2}]}'
    run pull "$reg_proxy" img/onelayer
    assert_status 0
    # Each 429 was followed by the same request, no sooner than asked.
    python3 - "$reg_proxy_log" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
limited = [r for r in rows if r[4] == "429"]
assert len(limited) == 2, "expected two 429s, got %d" % len(limited)
for r in limited:
    t, path = float(r[0]), r[2]
    later = [float(s[0]) for s in rows if s[2] == path and s[4] != "429" and float(s[0]) > t]
    assert later, "no retry of %s after its 429" % path
    wait = min(later) - t
    # The retry's log time is when its answer was complete, so it can only
    # be later than the request; 0.1 s of slack for clock rounding.
    assert wait >= 1.9, "%s retried after %.2f s, Retry-After was 2" % (path, wait)
EOF
    ch-run "$reg_proxy/img/onelayer" -- /bin/true
}

# ch-image.bats: ch-image as users call it, against the real registries of
# fixtures/registry.sh (TLS, plain HTTP, basic auth, bearer tokens) and the
# test images pushed there. Fault tests (kills, a stopped registry, full
# disk, 429, concurrent pulls) are in ch-image-faults.bats.
load common
load fixtures/registry-lib

setup_file() { reg_setup_file; }
teardown_file() { reg_teardown_file; }

setup() {
    reg_load
    cd "$BATS_TEST_TMPDIR" || return 1
    # The fixtures' CA through the user's configuration file; no site file.
    export CH_CONFIG_SITE=/nonexistent/site.yaml
    export CH_CONFIG_USER=$BATS_TEST_TMPDIR/config.yaml
    printf 'registry:\n  ca-file: %s\n' "$reg_ca" > "$CH_CONFIG_USER"
    unset CH_IMAGE_USERNAME CH_IMAGE_PASSWORD
}

teardown() {
    reg_proxy_stop
    chmod -R u+rwX "$BATS_TEST_TMPDIR" 2>/dev/null || true
}

# stored NAME: the image's directory in storage.
stored() {
    printf '%s/img/%s' "$CH_IMAGE_STORAGE" "$(printf '%s' "$1" | tr '/:' '%+')"
}

@test "ch-image --help lists the commands; each command has its own --help" {
    run ch-image --help
    assert_status 0
    top=$output
    for c in pull list delete inspect gestalt reset; do
        [[ $top == *"  $c "* ]]
        run ch-image "$c" --help
        assert_status 0
        assert_output_has "Usage: ch-image $c"
    done
    run ch-image pull --help
    assert_output_has "--output"
    assert_output_has "--insecure"
    run ch-image frobnicate
    assert_status 64
    assert_output_has "unknown command 'frobnicate'"
    run ch-image
    assert_status 64
}

@test "pull over TLS (CA from the configuration), then ch-run it by name" {
    run ch-image -v pull "$reg_tls/img/onelayer"
    assert_status 0
    assert_output_has "registry.ca-file: $reg_ca ($CH_CONFIG_USER:2:"
    [[ -d $(stored "$reg_tls/img/onelayer") ]]
    run ch-run "$reg_tls/img/onelayer" -- /bin/true
    assert_status 0
    run ch-run "$reg_tls/img/onelayer" -- cat /ch/environment
    assert_status 0
    assert_output_has "CH_TEST_IMAGE=onelayer"
    # ch-run --set-env without an argument reads /ch/environment.
    run ch-run --set-env "$reg_tls/img/onelayer" -- /bin/sh -c 'echo "[$CH_TEST_IMAGE]"'
    assert_status 0
    assert_output_has "[onelayer]"
    diff <(reg_expected_listing onelayer bin) <(reg_listing "$(stored "$reg_tls/img/onelayer")" bin)
}

@test "pull over TLS without the CA fails as a TLS failure; --tls-no-verify works" {
    : > "$CH_CONFIG_USER"
    run ch-image pull "$reg_tls/img/onelayer"
    assert_status 31
    assert_output_has "TLS"
    check_clean "$(stored "$reg_tls/img/onelayer")"
    run ch-image pull --tls-no-verify "$reg_tls/img/onelayer" one
    assert_status 0
    run ch-run one -- /bin/true
    assert_status 0
}

@test "pull over plain HTTP only for a registry marked insecure" {
    run ch-image pull "$reg_http/img/onelayer" one
    assert_status 31
    check_clean "$(stored one)"
    run ch-image pull --insecure "$reg_http" "$reg_http/img/onelayer" one
    assert_status 0
    assert_output_has "plain HTTP"
    run ch-run one -- /bin/true
    assert_status 0
    # The same from the configuration.
    printf 'registry:\n  insecure: ["%s"]\n' "$reg_http" > "$CH_CONFIG_USER"
    run ch-image pull "$reg_http/img/v2s2" v2s2
    assert_status 0
    run ch-run v2s2 -- /bin/true
    assert_status 0
}

@test "pull with basic auth: credentials from the environment, refused without" {
    run ch-image pull "$reg_basic/img/onelayer" one
    assert_status 31
    assert_output_has "unauthorized"
    check_clean "$(stored one)"
    CH_IMAGE_USERNAME=$reg_user CH_IMAGE_PASSWORD=wrong run ch-image pull "$reg_basic/img/onelayer" one
    assert_status 31
    assert_output_lacks "wrong"
    CH_IMAGE_USERNAME=$reg_user CH_IMAGE_PASSWORD=$reg_password run ch-image -vvv --auth pull "$reg_basic/img/onelayer" one
    assert_status 0
    assert_output_lacks "$reg_password"
    run ch-run one -- /bin/true
    assert_status 0
}

@test "pull with bearer tokens: anonymous for public, credentials for private" {
    run ch-image pull "$reg_token/img/onelayer" pub
    assert_status 0
    run ch-run pub -- /bin/true
    assert_status 0
    run ch-image pull "$reg_token/private/onelayer" priv
    assert_status 31
    check_clean "$(stored priv)"
    # Credentials from the configuration this time.
    printf 'registry:\n  ca-file: %s\n  auth:\n    "%s": {username: %s, password: %s}\n' \
           "$reg_ca" "$reg_token" "$reg_user" "$reg_password" > "$CH_CONFIG_USER"
    run ch-image pull "$reg_token/private/onelayer" priv
    assert_status 0
    run ch-run priv -- /bin/true
    assert_status 0
}

@test "multi-layer image: whiteouts, opaque directory, re-created file, hard link (gzip and zstd)" {
    for name in multi-small multi-small-zstd; do
        run ch-image pull "$reg_tls/img/$name" "$name"
        assert_status 0
        img=$(stored "$name")
        diff <(reg_expected_listing multi-small data) <(reg_listing "$img" data)
        [[ ! -e $img/data/gone-dir ]]
        [[ ! -e $img/data/gone/file1 ]]
        [[ $(ls "$img/data/opq") == new ]]
        [[ $(cat "$img/data/recreated") == "second version, after the whiteout" ]]
        [[ $(cat "$img/data/overwritten") == "third layer" ]]
        [[ $(stat -c %i "$img/data/hardlink-src") == $(stat -c %i "$img/data/hardlink-dst") ]]
        run ch-run "$name" -- cat /data/recreated
        assert_status 0
        assert_output_has "second version, after the whiteout"
    done
}

@test "multi-architecture index: host's by default, another with -a" {
    run ch-image pull "$reg_tls/img/multiarch" host
    assert_status 0
    run ch-run host -- cat /arch
    assert_status 0
    assert_output_has amd64
    run ch-image pull -a arm64/v8 "$reg_tls/img/multiarch" arm
    assert_status 0
    [[ $(cat "$(stored arm)/arch") == arm64* ]]
    run ch-image inspect arm
    assert_output_has '"arch_requested": "arm64/v8"'
    run ch-image pull -a s390x "$reg_tls/img/multiarch" none
    assert_status 31
    assert_output_has "arm64"
    check_clean "$(stored none)"
}

@test "schema 1 is refused" {
    [[ $reg_have_v2s1 == yes ]] || skip "the registry took no schema 1 push"
    run ch-image pull "$reg_tls/img/v2s1" v1
    assert_status 31
    assert_output_has "schema 1"
    check_clean "$(stored v1)"
}

@test "a config without history is accepted" {
    run ch-image pull "$reg_tls/img/nohistory" nohist
    assert_status 0
    run ch-run nohist -- /bin/true
    assert_status 0
}

@test "an altered blob is refused and nothing is published" {
    run ch-image pull "$reg_tls/img/altered" alt
    assert_status 31
    assert_output_has "digest"
    check_clean "$(stored alt)"
    [[ ! -e $CH_IMAGE_STORAGE/dlcache/${reg_altered_layer/:/-} ]]
}

@test "second pull of an unchanged image: one HEAD, no GET" {
    reg_proxy_start "http://$reg_http"
    run ch-image pull --insecure "$reg_proxy" "$reg_proxy/img/multi-small" m
    assert_status 0
    [[ $(reg_proxy_count "GET /v2/.*/blobs/") -gt 0 ]]
    : > "$reg_proxy_log"
    run ch-image -v pull --insecure "$reg_proxy" "$reg_proxy/img/multi-small" m
    assert_status 0
    assert_output_has "up to date"
    [[ $(reg_proxy_count "GET /v2/.*/(blobs|manifests)/") -eq 0 ]]
    [[ $(reg_proxy_count "HEAD /v2/.*/manifests/") -eq 1 ]]
    # A deleted image is unpacked again from the cache: no blob is fetched.
    run ch-image delete m
    assert_status 0
    : > "$reg_proxy_log"
    run ch-image pull --insecure "$reg_proxy" "$reg_proxy/img/multi-small" m
    assert_status 0
    [[ $(reg_proxy_count "GET /v2/.*/blobs/sha256:[0-9a-f]+") -le 1 ]] # the config, at most
    run ch-run m -- /bin/true
    assert_status 0
}

@test "list, inspect, delete" {
    run ch-image list
    assert_status 0
    [[ -z $output ]]
    run ch-image pull "$reg_tls/img/onelayer" a/b:1
    assert_status 0
    run ch-image pull "$reg_tls/img/nohistory" c
    assert_status 0
    run ch-image list
    assert_status 0
    [[ $output == $'a/b:1\nc' ]]
    [[ -d $CH_IMAGE_STORAGE/img/a%b+1 ]]
    run ch-image list --json
    assert_status 0
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert [x["name"] for x in d]==["a/b:1","c"], d' "$output"
    run ch-image inspect a/b:1
    assert_status 0
    python3 -c '
import json, sys
m = json.loads(sys.argv[1])
assert m["labels"]["org.example.ch-test"] == "onelayer", m
assert "CH_TEST_IMAGE=onelayer" in m["env"], m
assert m["cmd"] == ["/bin/sh"], m
assert m["digests"]["manifest"] == sys.argv[2], m
assert len(m["digests"]["layers"]) == 1, m
' "$output" "$reg_digest_onelayer"
    run ch-image delete a/b:1
    assert_status 0
    run ch-image list
    [[ $output == c ]]
    run ch-image delete a/b:1
    assert_status 31
    assert_output_has "no such image"
    run ch-image inspect nope
    assert_status 31
    run ch-image delete ../img
    assert_status 31
}

@test "gestalt: storage path, compressors, TLS library; storage-path alone" {
    run ch-image gestalt
    assert_status 0
    assert_output_has "storage-path: $CH_IMAGE_STORAGE (from \$CH_IMAGE_STORAGE)"
    assert_output_has "layer-compression: gzip, zstd"
    assert_output_has "tls-library: "
    assert_output_has "squash-compressors: gzip"
    run ch-image gestalt storage-path
    assert_status 0
    [[ $output == "$CH_IMAGE_STORAGE" ]]
    run ch-image -s /tmp/elsewhere gestalt storage-path
    [[ $output == /tmp/elsewhere ]]
    run ch-image gestalt bucache
    assert_status 64
}

@test "storage from the configuration, below CH_IMAGE_STORAGE and -s" {
    printf 'storage: %s/from-config\n' "$BATS_TEST_TMPDIR" > "$CH_CONFIG_USER"
    run ch-image gestalt storage-path
    [[ $output == "$CH_IMAGE_STORAGE" ]]
    unset CH_IMAGE_STORAGE
    run ch-image -v gestalt
    assert_output_has "storage-path: $BATS_TEST_TMPDIR/from-config (from configuration $CH_CONFIG_USER:1:"
    run ch-image -s "$BATS_TEST_TMPDIR/cli" gestalt storage-path
    [[ $output == "$BATS_TEST_TMPDIR/cli" ]]
}

@test "a malformed configuration file is an error naming FILE:LINE:COL" {
    printf 'registry:\n  insecure: [a, b\n  ca-file: x\n' > "$CH_CONFIG_USER"
    run ch-image pull "$reg_tls/img/onelayer" x
    assert_status 31
    [[ $output =~ $CH_CONFIG_USER:[0-9]+:[0-9]+ ]]
    check_clean "$(stored x)"
}

# planted_refused DIR OWNER: every command refuses storage DIR, which OWNER
# owns, with exit 31, and leaves it as it was.
planted_refused() {
    local st=$1 owner=$2 before args
    before=$(find "$st" -printf '%p %u %m %s\n' 2>/dev/null | sort)
    for args in list "inspect x" "delete x" reset "pull $reg_tls/img/onelayer y"; do
        # shellcheck disable=SC2086 # the words of args are meant
        run ch-image -s "$st" $args
        assert_status 31
        assert_output_has "ch-image: can't use storage directory $st: it is owned by $owner"
    done
    [[ $(find "$st" -printf '%p %u %m %s\n' 2>/dev/null | sort) == "$before" ]]
}

@test "storage another user planted (under /tmp, say) is refused by every command, untouched" {
    only_root
    local st=$BATS_TEST_TMPDIR/planted u=${CH_TEST_USER:-chtest}
    mkdir -p "$st/img/x/bin" "$st/dlcache"
    echo planted > "$st/img/x/bin/sh"
    chown -R "$u" "$st"
    planted_refused "$st" "$u"
}

@test "storage root made for the user is refused too" {
    only_user
    local st=${ch_img%/img}   # the staging area: root's, holding img/
    [[ $(stat -c %u "$st") -eq 0 ]] || skip_env "no root-owned staging area"
    planted_refused "$st" root
}

@test "reset empties storage that is ours; refuses what doesn't look like storage" {
    run ch-image pull "$reg_tls/img/onelayer" one
    assert_status 0
    run ch-image reset
    assert_status 0
    [[ ! -e $(stored one) ]]
    [[ ! -e $CH_IMAGE_STORAGE/dlcache ]]
    mkdir -p "$BATS_TEST_TMPDIR/notstorage"
    touch "$BATS_TEST_TMPDIR/notstorage/thesis.tex"
    run ch-image -s "$BATS_TEST_TMPDIR/notstorage" reset
    assert_status 31
    assert_output_has "doesn't look like ch-image storage"
    [[ -e $BATS_TEST_TMPDIR/notstorage/thesis.tex ]]
    chmod 0777 "$BATS_TEST_TMPDIR/notstorage"
    rm "$BATS_TEST_TMPDIR/notstorage/thesis.tex"
    run ch-image -s "$BATS_TEST_TMPDIR/notstorage" reset
    assert_status 31
}

@test "straight to a file: tar and SquashFS, same bytes twice, no image in storage" {
    for out in m.tar.gz m.sqfs; do
        run ch-image pull -o "$out" "$reg_tls/img/multi-small"
        assert_status 0
        cp "$out" "first-$out"
        run ch-image pull -o "$out" "$reg_tls/img/multi-small"
        assert_status 0
        cmp "$out" "first-$out"
    done
    run ch-image list
    [[ -z $output ]]
    # The layers' removals are applied, not written.
    run tar -tzf m.tar.gz
    assert_output_has "data/recreated"
    assert_output_has "ch/metadata.json"
    assert_output_lacks "data/gone-dir"
    assert_output_lacks ".wh."
    run ch-run ./m.sqfs -- cat /data/recreated
    assert_status 0
    assert_output_has "second version, after the whiteout"
    mkdir unpacked && tar -xzf m.tar.gz -C unpacked
    diff <(reg_expected_listing multi-small data) <(reg_listing unpacked data)
    # zstd layers too, and the format from --format.
    run ch-image pull -o z.out --format tar.zst "$reg_tls/img/multi-small-zstd"
    assert_status 0
    [[ $(head -c4 z.out | od -An -tx1 | tr -d ' ') == 28b52ffd ]]
}

@test "straight to a file: bad names and failures leave nothing" {
    run ch-image pull -o m.zip "$reg_tls/img/onelayer"
    assert_status 64
    check_clean "$BATS_TEST_TMPDIR/m.zip"
    echo "my thesis" > notes.tar
    run ch-image pull -o notes.tar "$reg_tls/img/onelayer"
    assert_status 31
    [[ $(cat notes.tar) == "my thesis" ]]
    run ch-image pull -o alt.sqfs "$reg_tls/img/altered"
    assert_status 31
    check_clean "$BATS_TEST_TMPDIR/alt.sqfs"
    run ch-image pull -o m.tar "$reg_tls/img/no-such-image"
    assert_status 31
    check_clean "$BATS_TEST_TMPDIR/m.tar"
}

@test "pull errors users can act on: unknown tag, unknown repository" {
    run ch-image pull "$reg_tls/img/onelayer:nope" x
    assert_status 31
    assert_output_has "manifest unknown"
    run ch-image pull "$reg_tls/no/such/repo" x
    assert_status 31
    check_clean "$(stored x)"
    run ch-image pull "127.0.0.1:1/img/onelayer" x
    assert_status 31
    assert_output_has "unreachable"
}

@test "every runnable test image: pulled, then ch-run NAME runs a command and reads a file" {
    local repo name
    for repo in $reg_runnable; do
        # The benchmark-size images only in the full scope: 400 MB each.
        if [[ $repo == img/multi || $repo == img/multi-zstd ]]; then
            [[ ${CH_TEST_SCOPE:-standard} == full ]] || continue
        fi
        name=${repo//\//-}
        run env CH_IMAGE_USERNAME="$reg_user" CH_IMAGE_PASSWORD="$reg_password" \
            "$ch_bin/ch-image" pull "$reg_token/$repo" "$name"
        assert_status 0
        run ch-run "$name" -- /bin/true
        assert_status 0
        run ch-run "$name" -- cat /ch/metadata.json
        assert_status 0
        assert_output_has "\"ref\": \"$reg_token/$repo:latest\""
    done
}

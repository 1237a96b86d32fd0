# ch-image-transport.bats: lib/registry's transport as ch-image uses it:
# secrets kept out of -vvv traces, one token per scope, retries of 503,
# resume with Range after a cut connection, mirrors and their fallback.
# Against the real registries of fixtures/registry.sh, and the fault proxy.
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
    cd "$BATS_TEST_TMPDIR" || return 1
    export CH_IMAGE_STORAGE=$BATS_TEST_TMPDIR/storage
    export CH_CONFIG_SITE=/nonexistent/site.yaml
    export CH_CONFIG_USER=$BATS_TEST_TMPDIR/config.yaml
    printf 'registry:\n  ca-file: %s\n' "$reg_ca" > "$CH_CONFIG_USER"
    unset CH_IMAGE_USERNAME CH_IMAGE_PASSWORD
}

teardown() {
    reg_proxy_stop
}

@test "transport: -vvv traces mask Basic credentials" {
    CH_IMAGE_USERNAME=$reg_user CH_IMAGE_PASSWORD=$reg_password \
        run ch-image -vvv --auth pull "$reg_basic/img/onelayer" one
    assert_status 0
    basic=$(printf '%s:%s' "$reg_user" "$reg_password" | base64 -w0)
    assert_output_lacks "$reg_password"
    assert_output_lacks "$basic"
    # The trace is really there, with the header masked.
    grep -qiF "Authorization: Basic ***" <<<"$output"
}

@test "transport: -vvv traces mask bearer tokens; one token for all of a pull" {
    log=$reg_dir/issuer.log
    before=$(wc -l < "$log" 2>/dev/null || echo 0)
    printf 'registry:\n  ca-file: %s\n  auth:\n    "%s": {username: %s, password: %s}\n' \
           "$reg_ca" "$reg_token" "$reg_user" "$reg_password" > "$CH_CONFIG_USER"
    run ch-image -vvv pull "$reg_token/private/onelayer" priv
    assert_status 0
    assert_output_lacks "$reg_password"
    grep -qiF "Authorization: Bearer ***" <<<"$output"
    # No token value anywhere: every Bearer the trace shows is masked.
    if grep -iE 'authorization: Bearer [^*]' <<<"$output"; then
        echo "a bearer token was printed" >&2
        return 1
    fi
    # Manifest, config and layer used the same token: one issuer request.
    after=$(wc -l < "$log")
    echo "issuer requests: $((after - before))"
    [[ $((after - before)) -eq 1 ]]
}

@test "transport: 503 on blobs is retried" {
    reg_proxy_start "http://$reg_http" '{"rules":[{"match":"/blobs/","count":2,"action":"503"}]}'
    run ch-image -v pull --insecure "$reg_proxy" "$reg_proxy/img/onelayer" one
    assert_status 0
    [[ $(grep -c $'\t503\t' "$reg_proxy_log") -ge 2 ]]
    run ch-run one -- /bin/true
    assert_status 0
}

@test "transport: a cut transfer resumes with Range, and the blob checks out" {
    # Cut the largest layer (over 4 MiB) after 1 MB.
    big=$(python3 - "$reg_http" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request("http://%s/v2/img/multi-small/manifests/latest" % sys.argv[1],
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
m = json.load(urllib.request.urlopen(req))
print(max(m["layers"], key=lambda l: l["size"])["digest"])
PY
)
    reg_proxy_start "http://$reg_http" \
        '{"rules":[{"match":"GET .*/blobs/'"$big"'","count":1,"action":"cut","after":1000000}]}'
    run ch-image -v pull --insecure "$reg_proxy" "$reg_proxy/img/multi-small" ms
    assert_status 0
    cat "$reg_proxy_log"
    # The second request for the cut blob asks for the rest only.
    grep -F "/blobs/$big" "$reg_proxy_log" | grep -qE $'\tbytes=1000000-\t206\t'
    run ch-run ms -- /bin/true
    assert_status 0
    diff <(reg_expected_listing multi-small data) <(reg_listing "$CH_IMAGE_STORAGE/img/ms" data)
}

@test "transport: a mirror is used, and a dead mirror falls back to the registry" {
    # The "registry" 127.0.0.1:9 doesn't exist; its mirror does.
    printf 'registry:\n  insecure: ["%s", "127.0.0.1:9"]\n  mirrors: {"127.0.0.1:9": "%s"}\n' \
           "$reg_http" "$reg_http" > "$CH_CONFIG_USER"
    run ch-image pull 127.0.0.1:9/img/onelayer one
    assert_status 0
    run ch-run one -- /bin/true
    assert_status 0
    # A mirror that doesn't answer: warned, then the registry.
    printf 'registry:\n  insecure: ["%s", "127.0.0.1:9"]\n  mirrors: {"%s": "127.0.0.1:9"}\n' \
           "$reg_http" "$reg_http" > "$CH_CONFIG_USER"
    run ch-image pull "$reg_http/img/onelayer" two
    assert_status 0
    assert_output_has "mirror 127.0.0.1:9 failed"
    run ch-run two -- /bin/true
    assert_status 0
}

@test "transport: errors name what happened" {
    # Nothing listens on port 9: unreachable, after the retries.
    printf 'registry:\n  insecure: ["127.0.0.1:9"]\n' > "$CH_CONFIG_USER"
    run timeout 120 "$ch_bin/ch-image" pull 127.0.0.1:9/img/onelayer one
    assert_status 31
    assert_output_has "registry unreachable"
    # The registry's own message for an unknown tag.
    printf 'registry:\n  ca-file: %s\n' "$reg_ca" > "$CH_CONFIG_USER"
    run ch-image pull "$reg_tls/img/onelayer:nope" one
    assert_status 31
    assert_output_has "unknown tag"
    assert_output_has "MANIFEST_UNKNOWN"
    assert_output_has "tags there include: latest"
    # Distribution says MANIFEST_UNKNOWN for a missing repository too; the
    # tag list tells them apart.
    run ch-image pull "$reg_tls/img/nosuchrepo" one
    assert_status 31
    assert_output_has "unknown repository"
    assert_output_has "NAME_UNKNOWN"
    # 429 beyond the retries: rate-limited, with the registry's message.
    reg_proxy_start "http://$reg_http" '{"rules":[{"match":"/manifests/","action":"429","retry_after":0}]}'
    run timeout 200 "$ch_bin/ch-image" pull --insecure "$reg_proxy" "$reg_proxy/img/onelayer" one
    assert_status 31
    assert_output_has "rate-limited"
}

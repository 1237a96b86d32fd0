# registry-fixtures.bats: the test registries themselves (fixtures/registry.sh),
# checked with curl, so that a failure in the ch-image suites points at
# ch-image and not at the fixtures.
load common
load fixtures/registry-lib

setup_file() { reg_setup_file; }
teardown_file() { reg_teardown_file; }
setup() { reg_load; }
teardown() { reg_proxy_stop; }

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
ACCEPT=(-H "Accept: $OCI_MANIFEST" -H "Accept: $OCI_INDEX"
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json'
        -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json'
        -H 'Accept: application/vnd.docker.distribution.manifest.v1+prettyjws')

# status URL [CURL-ARGS...]: print the HTTP status of a GET.
status_of() {
    local url=$1; shift
    curl -s -o /dev/null -w '%{http_code}' --cacert "$reg_ca" "$@" "$url"
}

# header_of NAME URL [CURL-ARGS...]: one response header of a GET.
header_of() {
    local name=$1 url=$2; shift 2
    curl -s -D - -o /dev/null --cacert "$reg_ca" "$@" "$url" \
        | tr -d '\r' | awk -v n="$name" 'BEGIN { IGNORECASE = 1 } tolower($1) == tolower(n) ":" { sub(/^[^:]*: /, ""); print }'
}

@test "registry fixtures: TLS and plain HTTP registries answer /v2/ with 200" {
    [[ $(status_of "https://$reg_tls/v2/") == 200 ]]
    [[ $(status_of "http://$reg_http/v2/") == 200 ]]
    # The certificate comes from the fixtures' CA, not the system's store.
    run curl -s -o /dev/null "https://$reg_tls/v2/"
    assert_status 60
    # And the plain one really is plain.
    run curl -s -o /dev/null --cacert "$reg_ca" "https://$reg_http/v2/"
    [[ $status -ne 0 ]]
}

@test "registry fixtures: basic-auth registry challenges, takes the password, refuses a wrong one" {
    [[ $(status_of "https://$reg_basic/v2/") == 401 ]]
    [[ $(header_of WWW-Authenticate "https://$reg_basic/v2/") == 'Basic realm="ch-test-basic"' ]]
    [[ $(status_of "https://$reg_basic/v2/" -u "$reg_user:$reg_password") == 200 ]]
    [[ $(status_of "https://$reg_basic/v2/" -u "$reg_user:wrong") == 401 ]]
    [[ $(status_of "https://$reg_basic/v2/img/onelayer/manifests/latest" "${ACCEPT[@]}") == 401 ]]
    [[ $(header_of Docker-Content-Digest "https://$reg_basic/v2/img/onelayer/manifests/latest" \
           -u "$reg_user:$reg_password" "${ACCEPT[@]}") == "$reg_digest_onelayer" ]]
}

@test "registry fixtures: token registry challenges with the issuer's realm and service" {
    [[ $(status_of "https://$reg_token/v2/") == 401 ]]
    [[ $(header_of WWW-Authenticate "https://$reg_token/v2/") \
           == "Bearer realm=\"$reg_issuer\",service=\"$reg_service\"" ]]
    local url="https://$reg_token/v2/img/onelayer/manifests/latest"
    [[ $(header_of WWW-Authenticate "$url" "${ACCEPT[@]}") \
           == "Bearer realm=\"$reg_issuer\",service=\"$reg_service\",scope=\"repository:img/onelayer:pull\""* ]]
}

@test "registry fixtures: anonymous token pulls a public repository, and only the one asked for" {
    local tok
    tok=$(reg_token_for repository:img/onelayer:pull)
    [[ -n $tok ]]
    [[ $(header_of Docker-Content-Digest "https://$reg_token/v2/img/onelayer/manifests/latest" \
           -H "Authorization: Bearer $tok" "${ACCEPT[@]}") == "$reg_digest_onelayer" ]]
    # The scope is honoured: the same token doesn't open another repository.
    [[ $(status_of "https://$reg_token/v2/img/nohistory/manifests/latest" \
           -H "Authorization: Bearer $tok" "${ACCEPT[@]}") == 401 ]]
    # Nor push (anonymous callers get pull only).
    [[ $(status_of "https://$reg_token/v2/img/onelayer/blobs/uploads/" -X POST \
           -H "Authorization: Bearer $tok") == 401 ]]
    # A forged token (signature of another key) is refused.
    local forged
    forged=${tok%.*}.$(printf 'not a signature' | base64 -w0 | tr '+/' '-_' | tr -d =)
    [[ $(status_of "https://$reg_token/v2/img/onelayer/manifests/latest" \
           -H "Authorization: Bearer $forged" "${ACCEPT[@]}") == 401 ]]
}

@test "registry fixtures: private repository needs credentials; wrong password refused by the issuer" {
    local tok url="https://$reg_token/v2/private/onelayer/manifests/latest"
    tok=$(reg_token_for repository:private/onelayer:pull)
    [[ $(status_of "$url" -H "Authorization: Bearer $tok" "${ACCEPT[@]}") == 401 ]]
    tok=$(reg_token_for repository:private/onelayer:pull "$reg_user:$reg_password")
    [[ $(header_of Docker-Content-Digest "$url" -H "Authorization: Bearer $tok" "${ACCEPT[@]}") \
           == "$reg_digest_onelayer" ]]
    run curl -s -o /dev/null -w '%{http_code}' --cacert "$reg_ca" -u "$reg_user:wrong" \
        "$reg_issuer?service=$reg_service&scope=repository:private/onelayer:pull"
    [[ $output == 401 ]]
    # The OAuth2 form (POST, grant_type=password) works too.
    run curl -sf --cacert "$reg_ca" -d grant_type=password -d "username=$reg_user" \
        -d "password=$reg_password" -d "service=$reg_service" \
        -d scope=repository:private/onelayer:pull "$reg_issuer"
    assert_status 0
    assert_output_has '"access_token"'
    # The password never reaches the issuer's log.
    if [[ -r $reg_dir/issuer.log ]]; then
        run grep -c -F "$reg_password" "$reg_dir/issuer.log"
        [[ $output == 0 ]]
    fi
}

@test "registry fixtures: every image's manifest has the recorded digest" {
    local repo name var
    for repo in $reg_images; do
        name=${repo#*/}
        [[ $repo == private/* ]] && name=onelayer
        var=reg_digest_${name//-/_}
        [[ $(header_of Docker-Content-Digest "http://$reg_http/v2/$repo/manifests/latest" "${ACCEPT[@]}") \
               == "${!var}" ]] || { echo "digest of $repo isn't ${!var}" >&2; return 1; }
    done
}

@test "registry fixtures: multiarch index, zstd layers, config without history, v2s2, v2s1" {
    local m
    m=$(curl -sf "${ACCEPT[@]}" "http://$reg_http/v2/img/multiarch/manifests/latest")
    [[ $(python3 -c 'import json,sys; print(json.load(sys.stdin)["mediaType"])' <<<"$m") == "$OCI_INDEX" ]]
    run python3 -c 'import json,sys; m = json.load(sys.stdin); print(" ".join(sorted(p["platform"]["architecture"] + ("/" + p["platform"]["variant"] if "variant" in p["platform"] else "") for p in m["manifests"])))' <<<"$m"
    [[ $output == "amd64 arm64/v8 ppc64le" ]]

    m=$(curl -sf "${ACCEPT[@]}" "http://$reg_http/v2/img/multi-small-zstd/manifests/latest")
    run python3 -c 'import json,sys; print(" ".join(sorted({l["mediaType"] for l in json.load(sys.stdin)["layers"]})))' <<<"$m"
    [[ $output == application/vnd.oci.image.layer.v1.tar+zstd ]]
    # ... and they really are zstd.
    local first
    first=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])' <<<"$m")
    curl -sf "http://$reg_http/v2/img/multi-small-zstd/blobs/$first" | zstd -t -q

    run curl -sf "http://$reg_http/v2/img/nohistory/blobs/$reg_config_nohistory"
    assert_status 0
    assert_output_has '"rootfs"'
    assert_output_lacks '"history"'
    run curl -sf "http://$reg_http/v2/img/onelayer/blobs/$reg_config_onelayer"
    assert_output_has '"history"'

    m=$(curl -sf "${ACCEPT[@]}" "http://$reg_http/v2/img/v2s2/manifests/latest")
    [[ $m == *'"mediaType": "application/vnd.docker.distribution.manifest.v2+json"'* \
       || $m == *'"mediaType":"application/vnd.docker.distribution.manifest.v2+json"'* ]]
    if [[ $reg_have_v2s1 == yes ]]; then
        m=$(curl -sf "${ACCEPT[@]}" "http://$reg_http/v2/img/v2s1/manifests/latest")
        [[ $(python3 -c 'import json,sys; print(json.load(sys.stdin)["schemaVersion"])' <<<"$m") == 1 ]]
    fi
}

@test "registry fixtures: img/altered's layer no longer matches its digest" {
    local got
    got=sha256:$(curl -sf "http://$reg_http/v2/img/altered/blobs/$reg_altered_layer" | sha256sum | cut -d' ' -f1)
    [[ $got != "$reg_altered_layer" ]]
    # Same size, so only a digest check catches it.
    [[ $(curl -sf "http://$reg_http/v2/img/altered/blobs/$reg_altered_layer" | wc -c) -gt 1000000 ]]
    # Its other layer is intact.
    local m l0
    m=$(curl -sf "${ACCEPT[@]}" "http://$reg_http/v2/img/altered/manifests/latest")
    l0=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])' <<<"$m")
    [[ sha256:$(curl -sf "http://$reg_http/v2/img/altered/blobs/$l0" | sha256sum | cut -d' ' -f1) == "$l0" ]]
}

@test "registry fixtures: the expected listing matches the layer unpacked by tar" {
    local m l0 d=$BATS_TEST_TMPDIR/unpacked
    m=$(curl -sf "${ACCEPT[@]}" "http://$reg_http/v2/img/onelayer/manifests/latest")
    l0=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])' <<<"$m")
    mkdir "$d"
    curl -sf "http://$reg_http/v2/img/onelayer/blobs/$l0" | tar -xzf - -C "$d" --no-same-owner
    diff <(reg_expected_listing onelayer) <(reg_listing "$d")
    # And the listings do tell trees apart.
    echo x > "$d/bin/extra"
    ! diff <(reg_expected_listing onelayer) <(reg_listing "$d") >/dev/null
}

@test "registry fixtures: fault proxy answers 429 with Retry-After, then forwards" {
    reg_proxy_start "http://$reg_http" \
        '{"rules": [{"match": "/manifests/", "count": 2, "action": "429", "retry_after": 3}]}'
    local url="http://$reg_proxy/v2/img/onelayer/manifests/latest"
    [[ $(status_of "$url" "${ACCEPT[@]}") == 429 ]]
    [[ $(header_of Retry-After "$url" "${ACCEPT[@]}") == 3 ]]
    [[ $(status_of "$url" "${ACCEPT[@]}") == 200 ]]
    [[ $(reg_proxy_count 'GET /v2/img/onelayer/manifests/') == 3 ]]
    [[ $(awk -F'\t' '$5 == 429' "$reg_proxy_log" | wc -l) == 2 ]]
}

@test "registry fixtures: fault proxy cuts a blob, passes ranges through, stalls" {
    reg_proxy_start "http://$reg_http" \
        '{"rules": [{"match": "/blobs/", "count": 1, "action": "cut", "after": 100000}]}'
    local url="http://$reg_proxy/v2/img/altered/blobs/$reg_altered_layer"
    run curl -s -o "$BATS_TEST_TMPDIR/part" "$url"
    assert_status 18   # CURLE_PARTIAL_FILE: fewer bytes than Content-Length
    [[ $(stat -c %s "$BATS_TEST_TMPDIR/part") == 100000 ]]
    # A resumed request gets the rest (206), forwarded as is.
    [[ $(status_of "$url" -H 'Range: bytes=100000-') == 206 ]]
    [[ $(awk -F'\t' '$4 == "bytes=100000-"' "$reg_proxy_log" | wc -l) == 1 ]]
    # Stall: the client's own timeout is what ends it.
    printf '%s\n' '{"rules": [{"match": "/blobs/", "action": "stall", "after": 5000}]}' > "$reg_proxy_control"
    run curl -s -o /dev/null --max-time 2 "$url"
    assert_status 28   # CURLE_OPERATION_TIMEDOUT
}

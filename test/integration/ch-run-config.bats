#!/usr/bin/env bats
# ch-run-config.bats: the site's and the user's configuration as ch-run
# reads it (run.binds, run.env, run.join-timeout), -v's provenance, and
# errors at FILE:LINE:COL. Each test writes its own files and points
# CH_CONFIG_SITE and CH_CONFIG_USER at them.

load common

setup() {
    cfg=$BATS_TEST_TMPDIR/cfg
    mkdir -p "$cfg"
    export CH_CONFIG_SITE=$cfg/site.yaml
    export CH_CONFIG_USER=$cfg/user.yaml
    data=$BATS_TEST_TMPDIR/data
    mkdir -p "$data"
    echo from-host > "$data/file"
    chmod -R a+rX "$BATS_TEST_TMPDIR"
}

@test 'ch-run-config: site binds, optional ones skipped when absent, and -v says where from' {
    cat > "$CH_CONFIG_SITE" <<EOF
run:
  binds:
    - $data:/mnt
    - {source: /nonexistent/lustre, target: /lustre, optional: true}
EOF
    run ch-run -v "$ch_busybox" -- cat /mnt/file
    assert_status 0
    assert_output_has "config: read $CH_CONFIG_SITE"
    assert_output_has "config: bind $data -> /mnt from $CH_CONFIG_SITE:3:7"
    assert_output_has "config: bind /nonexistent/lustre -> /lustre (optional) from $CH_CONFIG_SITE:4:7"
    assert_output_has "from-host"
    assert_output_lacks "can't bind"
}

@test 'ch-run-config: a required site bind follows -b rules: nothing created outside the image' {
    cat > "$CH_CONFIG_SITE" <<EOF
run:
  binds: ["$data:/no-such-dir-in-image"]
EOF
    run ch-run "$ch_busybox" -- true
    assert_status 31
    assert_output_has "can't bind $data to /no-such-dir-in-image"
    assert_output_has "not found in the image"
    [[ ! -e $ch_busybox/no-such-dir-in-image ]]
    cat > "$CH_CONFIG_SITE" <<EOF
run:
  binds: ["$data:relative"]
EOF
    run ch-run "$ch_busybox" -- true
    assert_status 31
    assert_output_has "$CH_CONFIG_SITE:2:11: can't bind $data to relative: destination must be an absolute path"
}

@test 'ch-run-config: lists add up (site first), the user wins for scalars and per variable' {
    mkdir -p "$BATS_TEST_TMPDIR/data2"
    cat > "$CH_CONFIG_SITE" <<EOF
run:
  binds: ["$data:/mnt"]
  env:
    set: {SITE_ONLY: s, BOTH: site}
  join-timeout: 5
EOF
    cat > "$CH_CONFIG_USER" <<EOF
run:
  binds: ["$BATS_TEST_TMPDIR/data2:/home"]
  env:
    set: {BOTH: user}
  join-timeout: 9
EOF
    run ch-run -v "$ch_busybox" -- sh -c 'echo $SITE_ONLY $BOTH; ls -d /mnt/file /home'
    assert_status 0
    assert_output_has "s user"
    assert_output_has "/mnt/file"
    assert_output_has "config: set BOTH from $CH_CONFIG_USER:4:17"
    assert_output_has "config: join timeout 9 s from $CH_CONFIG_USER:5:17"
    # The command line wins over both, and $CH_JOIN_TIMEOUT over the files.
    run ch-run -v --set-env=BOTH=cli --join-timeout=2 "$ch_busybox" -- sh -c 'echo $BOTH'
    assert_output_has "config: join timeout 2000 ms from --join-timeout"
    assert_line_is -1 cli
    CH_JOIN_TIMEOUT=3 run ch-run -v "$ch_busybox" -- true
    assert_output_has 'config: join timeout 3 s from $CH_JOIN_TIMEOUT'
}

@test 'ch-run-config: run.env.pass and the launcher variables survive --unset-env' {
    cat > "$CH_CONFIG_SITE" <<EOF
run:
  env:
    pass: [UCX_*]
EOF
    UCX_TLS=sm SLURM_JOB_ID=12 PMIX_RANK=3 OTHER=x \
        run ch-run --unset-env='*' "$ch_busybox" -- env
    assert_status 0
    assert_output_has "UCX_TLS=sm"
    assert_output_has "SLURM_JOB_ID=12"
    assert_output_has "PMIX_RANK=3"
    assert_output_lacks "OTHER=x"
}

@test 'ch-run-config: the join timeout from the configuration is used' {
    cat > "$CH_CONFIG_SITE" <<EOF
run:
  join-timeout: 1
EOF
    local tag=cfg.$$.$BATS_TEST_NUMBER
    run ch-run -v --join-ct=2 --join-tag="$tag" "$ch_busybox" -- true
    assert_status 0
    assert_output_has "join group $tag: timed out after 1 s: 1 of 2 peers joined"
    wait_until 5 test ! -e "/dev/shm/ch-run-join.$(id -u).$tag"
}

@test 'ch-run-config: malformed files are errors at FILE:LINE:COL, nothing runs' {
    printf 'run:\n  binds: [a\n' > "$CH_CONFIG_SITE"
    run ch-run "$ch_busybox" -- echo ran
    assert_status 31
    assert_output_has "can't read config $CH_CONFIG_SITE:3:1"
    assert_output_lacks ran
    printf 'run:\n  join-timeout: soon\n' > "$CH_CONFIG_SITE"
    run ch-run "$ch_busybox" -- echo ran
    assert_status 31
    assert_output_has "can't read config $CH_CONFIG_SITE:2:17: run.join-timeout must be an integer"
    printf 'run:\n  join-timeout: 0\n' > "$CH_CONFIG_SITE"
    run ch-run "$ch_busybox" -- echo ran
    assert_status 31
    assert_output_has "$CH_CONFIG_SITE:2:17"
    printf 'run:\n  binds:\n    - {source: /x, destination: /y}\n' > "$CH_CONFIG_SITE"
    run ch-run "$ch_busybox" -- echo ran
    assert_status 31
    assert_output_has "can't read config $CH_CONFIG_SITE:3:20: unknown bind field 'destination'"
    printf 'run:\n  env:\n    pass: ["A*B"]\n' > "$CH_CONFIG_SITE"
    run ch-run "$ch_busybox" -- echo ran
    assert_status 31
    assert_output_has "$CH_CONFIG_SITE:3:12: bad pattern"
}

@test 'ch-run-config: the example site configuration (examples/site/config.yaml) works' {
    local ex=$ch_img/../examples/site/config.yaml
    [[ -e $ex ]] || skip "examples not staged (test/setup/stage.sh copies them)"
    CH_CONFIG_SITE=$ex run ch-run -v "$ch_busybox" -- sh -c 'echo $OMPI_MCA_btl_vader_single_copy_mechanism'
    assert_status 0
    assert_output_has "config: bind /scratch -> /scratch (optional) from $ex:9:7"
    assert_output_has "config: bind /local/$USER -> /local (optional) from $ex:11:7"
    assert_output_has "config: pass UCX_* from $ex"
    assert_output_has "config: join timeout 60 s from $ex:20:17"
    assert_line_is -1 cma
    # Its injection set names Open MPI's libraries, found in the host's cache.
    ldconfig -p | grep -q '^[[:space:]]libmpi\.so\.40 ' || skip_env "no Open MPI (libmpi.so.40) on this host"
    CH_CONFIG_SITE=$ex run ch-run -v --inject=mpi "$ch_busybox" -- sh -c 'test -f /ch/inject/0/libmpi.so.40 && echo found'
    assert_status 0
    assert_output_has "inject set mpi from $ex:27:7"
    assert_output_has "inject libmpi.so.40: /"
    assert_line_is -1 found
}

#!/usr/bin/env bats
# ch-run-join.bats: --join (one container for the peers of a step on a
# node), its rendezvous object in /dev/shm, the holder that keeps the
# namespaces for late peers, --join-pid, and SIGTERM to a whole job.
# Every test uses its own tag and checks that nothing is left: no object in
# /dev/shm, no holder, no FUSE server, no mount.

load common

setup() {
    tag=jbats.$$.$BATS_TEST_NUMBER
    shm_obj=/dev/shm/ch-run-join.$(id -u).$tag
    ch_sq=$ch_img/busybox.sqfs
    mnt=$BATS_TEST_TMPDIR/mnt
    mkdir -p "$mnt"
    out=$BATS_TEST_TMPDIR/out
    mkdir -p "$out"
}

teardown() {
    rm -f "$shm_obj"
}

# holder_pids TAG: live holders of groups made with --join-tag=TAG.
holder_pids() {
    local p
    for p in $(pgrep -x ch-join-holder); do
        [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) == Z ]] && continue
        tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "--join-tag=$1 " && echo "$p"
    done
    return 0
}
has_server() { [[ -n $(server_pids "$1") ]]; }
has_holder() { [[ -n $(holder_pids "$1") ]]; }
no_holder() { [[ -z $(holder_pids "$1") ]]; }
# in_container PID: PID has left the host's mount namespace.
in_container() { [[ $(readlink "/proc/$1/ns/mnt") != "$(readlink /proc/self/ns/mnt)" ]]; }
owned_by() { [[ $(stat -c %u "/proc/$1") == "$2" ]]; }
no_object() { [[ ! -e $shm_obj && ! -L $shm_obj ]]; }

# all_clean: nothing of this test's is left, after a grace period for the
# holder and the FUSE server to go.
all_clean() {
    wait_until 5 no_holder "$tag" || { echo "holder left: $(holder_pids "$tag")" >&2; return 1; }
    wait_until 5 no_server "$mnt" || { echo "FUSE server left: $(server_pids "$mnt")" >&2; return 1; }
    no_object || { echo "left in /dev/shm: $shm_obj" >&2; return 1; }
    if grep -qF -- "$BATS_TEST_TMPDIR" /proc/self/mountinfo; then
        echo "mount left:" >&2
        grep -F -- "$BATS_TEST_TMPDIR" /proc/self/mountinfo >&2
        return 1
    fi
}

need_squash() {
    [[ -e $ch_sq ]] || skip_env "SquashFS fixture missing"
    [[ -r /dev/fuse && -w /dev/fuse ]] || skip_env "/dev/fuse not usable by $(id -un)"
}

# peers N IMG CMD...: N peers at once (--join-ct=N, this test's tag), each
# writing its output to $out/N; fails unless every peer exits 0.
peers() {
    local n=$1 img=$2 i rc=0
    shift 2
    local pids=() m=()
    [[ $img == *.sqfs ]] && m=(-m "$mnt")
    for ((i = 0; i < n; i++)); do
        ch-run --join-ct="$n" --join-tag="$tag" "${m[@]}" "$img" -- "$@" > "$out/$i" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            echo "peer $i failed:" >&2
            cat "$out/$i" >&2
            rc=1
        fi
    done
    return $rc
}

@test 'ch-run-join: 16 peers of /bin/true, ten times in a row (directory image)' {
    local round
    for round in $(seq 10); do
        peers 16 "$ch_busybox" /bin/true
    done
    all_clean
}

@test 'ch-run-join: 16 peers of /bin/true, ten times in a row (SquashFS image)' {
    need_squash
    local round
    for round in $(seq 10); do
        peers 16 "$ch_sq" /bin/true
    done
    all_clean
}

@test 'ch-run-join: peers share one user and one mount namespace, not the host namespaces' {
    peers 6 "$ch_busybox" sh -c 'readlink /proc/self/ns/user; readlink /proc/self/ns/mnt'
    cat "$out"/* | sort | uniq -c | sed 's/^/# /'
    [[ $(cat "$out"/* | sort -u | wc -l) -eq 2 ]]
    [[ $(sort -u "$out"/* | grep -c user) -eq 1 ]]
    run grep -F -e "$(readlink /proc/self/ns/mnt)" -e "$(readlink /proc/self/ns/user)" "$out"/*
    assert_status 1 # the host's namespaces are not the container's
    all_clean
}

@test 'ch-run-join: one FUSE server for all peers of a SquashFS group' {
    need_squash
    local i pids=()
    for i in 0 1 2 3; do
        ch-run --join-ct=4 --join-tag="$tag" -m "$mnt" "$ch_sq" -- sleep 2 &
        pids+=($!)
    done
    sleep 1
    local servers
    servers=$(server_pids "$mnt" | wc -l)
    for i in "${pids[@]}"; do wait "$i"; done
    echo "# servers while running: $servers"
    [[ $servers -eq 1 ]]
    all_clean
}

@test 'ch-run-join: late peers still join after the first peer has exited' {
    run ch-run --join-ct=3 --join-tag="$tag" "$ch_busybox" -- /bin/true
    assert_status 0
    [[ -n $(holder_pids "$tag") ]] # it keeps the container for the others
    sleep 0.3
    peers_out=$(ch-run --join-ct=3 --join-tag="$tag" "$ch_busybox" -- echo second &&
                ch-run --join-ct=3 --join-tag="$tag" "$ch_busybox" -- echo third)
    [[ $peers_out == $'second\nthird' ]]
    all_clean
}

@test 'ch-run-join: the holder leaves the job's process group as it goes' {
    # Slurm's proctrack/pgid waits until no process of a task's group is
    # left, zombies included, and the holder's zombie is init's to reap.
    setsid bash -c "'$ch_bin/ch-run' --join-ct=2 --join-tag=$tag '$ch_busybox' -- true &
                    '$ch_bin/ch-run' --join-ct=2 --join-tag=$tag '$ch_busybox' -- true &
                    wait; echo \$\$ > '$out/pgid'"
    # Until the holder has gone (it may still be running, in the group, for
    # its signals), it must never be a zombie in the group. Init reaps that
    # zombie within about a second on the test machine; sooner elsewhere,
    # where the test can't tell.
    local pgid i f st live zombie
    pgid=$(cat "$out/pgid")
    for i in $(seq 30); do
        live='' zombie=''
        for f in /proc/[0-9]*/stat; do
            read -r -a st < "$f" 2> /dev/null || continue
            [[ ${st[1]} == "(ch-join-holder)" && ${st[4]} == "$pgid" ]] || continue
            if [[ ${st[2]} == Z ]]; then zombie=${f%/stat}; else live=${f%/stat}; fi
        done
        [[ -z $zombie ]] || { echo "the holder's zombie is in the job's process group: $zombie" >&2; false; }
        [[ -n $live ]] || break
        sleep 0.1
    done
    [[ -z $live ]] || { echo "holder still running after 3 s: $live" >&2; false; }
    all_clean
}

@test 'ch-run-join: a lone peer runs; its holder gives up at the timeout and cleans up' {
    # The holder's warning is for -v: it writes to ch-run's stderr, which a
    # $(...) would otherwise wait on.
    run ch-run -v --join-ct=2 --join-tag="$tag" --join-timeout=1 "$ch_busybox" -- echo alone
    assert_status 0
    assert_output_has $'\nalone\n'
    assert_output_has "join group $tag: timed out after 1 s: 1 of 2 peers joined (1 arrived)"
    all_clean
}

@test 'ch-run-join: a peer killed mid-rendezvous: the others finish, nothing is left' {
    local i pids=() victim rc
    for i in 0 1 2; do
        ch-run --join-ct=4 --join-tag="$tag" --join-timeout=2 "$ch_busybox" -- sleep 0.5 \
            > "$out/$i" 2>&1 &
        pids+=($!)
    done
    ch-run --join-ct=4 --join-tag="$tag" --join-timeout=2 "$ch_busybox" -- sleep 0.5 &
    victim=$!
    kill -KILL "$victim"
    wait "$victim" || true
    for i in "${!pids[@]}"; do
        rc=0
        wait "${pids[$i]}" || rc=$?
        cat "$out/$i" | sed 's/^/# /'
        # Proceeds (0), or times out cleanly with a message that says so.
        [[ $rc -eq 0 ]] || grep -qE "join group $tag: (timed out|the first peer)" "$out/$i"
    done
    all_clean
}

@test 'ch-run-join: a planted object in /dev/shm is refused, never followed' {
    local target=$BATS_TEST_TMPDIR/target
    echo precious > "$target"
    ln -s "$target" "$shm_obj"
    run ch-run --join-ct=2 --join-tag="$tag" "$ch_busybox" -- /bin/true
    assert_status 31
    assert_output_has "can't join group $tag: refusing $shm_obj: it is a symbolic link"
    [[ $(cat "$target") == precious ]]
    rm -f "$shm_obj"

    printf 'x%.0s' $(seq 100) > "$shm_obj"
    chmod 0644 "$shm_obj"
    run ch-run --join-ct=2 --join-tag="$tag" "$ch_busybox" -- /bin/true
    assert_status 31
    assert_output_has "refusing $shm_obj: not a join object of this user's (owner uid $(id -u), mode 0644"
    rm -f "$shm_obj"
}

@test 'ch-run-join: an object planted by another user is refused' {
    only_root
    touch "$shm_obj"
    chown nobody "$shm_obj"
    chmod 0600 "$shm_obj"
    run ch-run --join-ct=2 --join-tag="$tag" "$ch_busybox" -- /bin/true
    assert_status 31
    assert_output_has "refusing $shm_obj: not a join object of this user's (owner uid $(id -u nobody)"
    [[ $(stat -c %s "$shm_obj") -eq 0 ]]
}

@test 'ch-run-join: the count comes from Slurm per node, or from Open MPI' {
    # Node 2 of "4(x2),2" runs 2 tasks: two peers make a whole group.
    local i pids=()
    for i in 0 1; do
        SLURM_STEP_TASKS_PER_NODE='4(x2),2' SLURM_NODEID=2 \
            ch-run --join-tag="$tag" "$ch_busybox" -- /bin/true &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    all_clean # a count of 4 would leave the holder waiting
    OMPI_COMM_WORLD_LOCAL_SIZE=1 run ch-run -j --join-tag="$tag" "$ch_busybox" -- /bin/true
    assert_status 0
    all_clean
}

@test 'ch-run-join: wrong or missing counts are clear errors' {
    run env -u SLURM_STEP_TASKS_PER_NODE -u OMPI_COMM_WORLD_LOCAL_SIZE \
        "$ch_bin/ch-run" --join "$ch_busybox" -- /bin/true
    assert_status 31
    assert_output_has "--join: can't tell how many peers to wait for: give --join-ct=N"
    SLURM_STEP_TASKS_PER_NODE='4(x2),2' SLURM_NODEID=3 run ch-run -j "$ch_busybox" -- /bin/true
    assert_status 31
    assert_output_has "SLURM_NODEID=3 but SLURM_STEP_TASKS_PER_NODE=4(x2),2 lists 3 nodes"
    SLURM_STEP_TASKS_PER_NODE='4(y2)' run ch-run -j "$ch_busybox" -- /bin/true
    assert_status 31
    assert_output_has "bad repeat (y2)"
    run ch-run --join-ct=0 "$ch_busybox" -- /bin/true
    assert_status 64
    assert_output_has "bad --join-ct: 0"
    run ch-run --join-timeout=0 -j "$ch_busybox" -- /bin/true
    assert_status 64
    assert_output_has "bad --join-timeout: 0"
    CH_JOIN_TIMEOUT=soon run ch-run --join-ct=2 --join-tag="$tag" "$ch_busybox" -- /bin/true
    assert_status 31
    assert_output_has "bad CH_JOIN_TIMEOUT=soon"
    all_clean
}

@test 'ch-run-join: --join-pid enters a running container of the same user' {
    "$ch_bin/ch-run" "$ch_busybox" -- sleep 5 & # not the function: $! must be ch-run
    local pid=$!
    wait_until 5 in_container "$pid"
    run ch-run --join-pid="$pid" "$ch_busybox" -- readlink /proc/self/ns/mnt
    assert_status 0
    assert_line_is 0 "$(readlink /proc/$pid/ns/mnt)"
    kill "$pid"
    wait "$pid" || true
}

@test 'ch-run-join: --join-pid refuses processes of other users and non-containers' {
    run ch-run --join-pid=$$ "$ch_busybox" -- /bin/true
    assert_status 31
    assert_output_has "can't join pid $$: it is not in a container"
    if as_root; then
        setpriv --reuid=nobody --regid=nogroup --clear-groups sleep 5 &
        local pid=$!
        wait_until 5 owned_by "$pid" "$(id -u nobody)"
        run ch-run --join-pid="$pid" "$ch_busybox" -- /bin/true
        kill "$pid"
        wait "$pid" || true
        assert_status 31
        assert_output_has "can't join pid $pid: it is another user's process (uid $(id -u nobody))"
    else
        run ch-run --join-pid=1 "$ch_busybox" -- /bin/true
        assert_status 31
        assert_output_has "can't join pid 1: it is another user's process (uid 0)"
    fi
    run ch-run --join-pid=1 --join "$ch_busybox" -- /bin/true
    assert_status 64
}

@test 'ch-run-join: SIGTERM to the job ends every process and the FUSE server' {
    need_squash
    # As Slurm does: the step's processes get SIGTERM, here through their
    # process group. Background processes in the container go too.
    setsid "$ch_bin/ch-run" -m "$mnt" "$ch_sq" -- sh -c 'sleep 100 & sleep 100; wait' &
    local pid=$!
    wait_until 5 has_server "$mnt"
    sleep 0.3
    kill -TERM -- -"$pid"
    wait "$pid" || true
    all_clean
}

@test 'ch-run-join: SIGTERM to joined peers ends them and the holder, nothing left' {
    need_squash
    local i
    # 3 of 4 peers: the holder still waits for the fourth.
    setsid bash -c "for i in 1 2 3; do '$ch_bin/ch-run' --join-ct=4 --join-tag=$tag -m '$mnt' '$ch_sq' -- sleep 100 & done; wait" &
    local pid=$!
    wait_until 10 has_holder "$tag"
    sleep 0.5
    kill -TERM -- -"$pid"
    wait "$pid" || true
    all_clean
}

@test 'ch-run-join: PMIx directories the image lacks are reached through a descriptor' {
    # As Slurm's mpi/pmix sets them: the server's directory in its spool
    # (which the image lacks) and the data store under it. TMPDIR elsewhere,
    # so the container's /tmp does not show the host's.
    local spool=$BATS_TEST_TMPDIR/spool/pmix.7.0
    mkdir -p "$spool/pmix_dstor_ds21_9" "$BATS_TEST_TMPDIR/t"
    echo store > "$spool/pmix_dstor_ds21_9/initial-pmix_shared-segment"
    PMIX_SERVER_TMPDIR=$spool/ PMIX_DSTORE_21_BASE_PATH=$spool/pmix_dstor_ds21_9 \
    TMPDIR=$BATS_TEST_TMPDIR/t \
        run ch-run -v "$ch_busybox" -- sh -c 'echo $PMIX_SERVER_TMPDIR; cat $PMIX_DSTORE_21_BASE_PATH/initial-pmix_shared-segment'
    assert_status 0
    assert_output_has "PMIx directory $spool/ is not in the image: reached as /proc/self/fd/"
    assert_output_lacks "warning"
    [[ ${lines[-2]} == /proc/self/fd/*/ ]]
    assert_line_is -1 store
    # Peers of a joined container reach it the same way.
    local i
    for i in 0 1; do
        PMIX_SERVER_TMPDIR=$spool/ PMIX_DSTORE_21_BASE_PATH=$spool/pmix_dstor_ds21_9 \
        TMPDIR=$BATS_TEST_TMPDIR/t ch-run --join-ct=2 --join-tag="$tag" "$ch_busybox" -- \
            sh -c 'cat $PMIX_DSTORE_21_BASE_PATH/initial-pmix_shared-segment' > "$out/$i" 2>&1 &
    done
    wait
    [[ $(cat "$out/0") == store && $(cat "$out/1") == store ]]
    all_clean
}

@test 'ch-run-join: Open MPI is told CMA is off without --join, left alone with it' {
    run ch-run "$ch_busybox" -- env
    assert_output_has "OMPI_MCA_btl_vader_single_copy_mechanism=none"
    run ch-run --join-ct=1 --join-tag="$tag" "$ch_busybox" -- env
    assert_output_lacks "OMPI_MCA_btl_vader_single_copy_mechanism"
    OMPI_MCA_btl_vader_single_copy_mechanism=cma run ch-run "$ch_busybox" -- env
    assert_output_has "OMPI_MCA_btl_vader_single_copy_mechanism=cma"
    all_clean
}

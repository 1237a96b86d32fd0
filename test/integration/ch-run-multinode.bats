# ch-run across nodes: two virtual Slurm nodes on this machine
# (fixtures/vnodes.sh; stage.sh starts them as root), each a slurmd in its own
# network, UTS, mount and IPC namespaces with its own /tmp and /dev/shm. The
# jobs run chtools as a site installs it, `make install`ed onto the shared
# directory ($VN_LUSTRE/ch), with the images on that directory too, as users
# run them: srun from the login node (this host), ch-run by name from PATH.
#
# The point of most tests is --join with uneven layouts: every node must
# count its own tasks (SLURM_STEP_TASKS_PER_NODE with SLURM_NODEID), or the
# node with fewer tasks waits for peers that never come.

load common

setup() {
    need_scope standard
    local env=${CH_TEST_VNODES:-$(dirname "$ch_img")/vnodes}/env
    [[ -r $env ]] || skip_env "no virtual cluster (stage.sh starts one as root: fixtures/vnodes.sh)"
    # shellcheck source=/dev/null
    source "$env"
    # The sanitizer pass runs the sanitizer build, installed beside.
    if [[ $(basename "$ch_bin") == bin-san ]]; then
        vn_prefix=$VN_LUSTRE/ch-san
    else
        vn_prefix=$VN_LUSTRE/ch
    fi
    export PATH=$vn_prefix/bin:$PATH
    vn_img=$VN_LUSTRE/img
    # Storage (and so the SquashFS mount point) on each node's own /tmp, as
    # node-local storage is on a real cluster.
    export CH_IMAGE_STORAGE=/tmp/$USER.ch
    # Jobs start where srun was called: a directory every node sees.
    vn_work=$(mktemp -d "$VN_LUSTRE/$USER.XXXXXX")
    chmod 0755 "$vn_work"
    cd "$vn_work" || return 1
}

teardown() {
    # A failed test may leave its job behind: end it before the next test.
    [[ -n ${VN_DIR:-} ]] && scancel --quiet --user="$USER" 2>/dev/null
    cd / || true
    [[ -n ${vn_work:-} ]] && rm -rf "$vn_work"
    if [[ -n ${vn2_dir:-} ]]; then
        VN_DIR=$vn2_dir "$BATS_TEST_DIRNAME/fixtures/vnodes.sh" stop || true
        rm -rf "$vn2_dir"
    fi
    return 0
}

# A bounded srun: a hang fails the test instead of the whole run.
# vn_env: environment for it only (vn_layout's hostfile).
vn_env=()
vn_srun() { timeout -k 10 300 env "${vn_env[@]}" srun --quiet --kill-on-bad-exit=1 "$@"; }

need_mpi() {
    [[ -d $vn_img/mpi && -f $vn_img/mpi.sqfs ]] \
        || skip_env "no MPI image (fixtures/mpi-image.sh needs mmdebstrap and Debian's mirror)"
}

# vn_layout A+B: srun options putting A tasks on vn1 and B on vn2 (in
# vn_args and vn_env), each layout asked for the way users do: tasks per
# node, an arbitrary distribution by -w or by a hostfile on the shared
# directory.
vn_layout() {
    local a=${1%+*} b=${1#*+} i hosts=()
    for ((i = 0; i < a; i++)); do hosts+=(vn1); done
    for ((i = 0; i < b; i++)); do hosts+=(vn2); done
    vn_env=()
    if ((a == b)); then
        vn_args=(-N 2 --ntasks-per-node="$a")
    elif ((a + b <= 4)); then
        vn_args=(-n $((a + b)) --distribution=arbitrary -w "$(IFS=,; echo "${hosts[*]}")")
    else
        printf '%s\n' "${hosts[@]}" > "$vn_work/hostfile"
        vn_env=(SLURM_HOSTFILE="$vn_work/hostfile")
        vn_args=(-n $((a + b)) --distribution=arbitrary)
    fi
}

# The nodes' network namespaces, as their tasks see them.
vn_nets() {
    vn_srun -N 2 --ntasks-per-node=1 readlink /proc/self/ns/net | sort -u | tr '\n' ' '
}

# Processes of ours on the nodes, other than Slurm's own daemons: what a
# finished job must not leave (ranks, FUSE servers, join holders).
vn_leftover_procs() {
    local p net comm
    for p in /proc/[0-9]*; do
        [[ -O $p ]] || continue
        net=$(readlink "$p/ns/net" 2>/dev/null) || continue
        [[ " $vn_net_list " == *" $net "* ]] || continue
        comm=$(cat "$p/comm" 2>/dev/null) || continue
        [[ $comm == slurmd || $comm == slurmstepd ]] && continue
        echo "${p#/proc/} $comm: $(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)"
    done
}
vn_no_leftover_procs() { [[ -z $(vn_leftover_procs) ]]; }

# After a job: nothing of ours runs on either node, nothing is in either
# node's /dev/shm (the rendezvous files, MPI's segments), and no FUSE mount
# reached a node's own mount table.
vn_assert_clean() {
    local out vn_env=()
    vn_net_list=$(vn_nets)
    [[ $(wc -w <<< "$vn_net_list") -eq 2 ]] || { echo "expected two node namespaces: $vn_net_list" >&2; return 1; }
    if ! wait_until 15 vn_no_leftover_procs; then
        printf 'processes left on the nodes:\n%s\n' "$(vn_leftover_procs)" >&2
        return 1
    fi
    out=$(vn_srun -N 2 --ntasks-per-node=1 --label sh -c 'ls -A /dev/shm; grep -c fuse /proc/self/mountinfo || true')
    if [[ $(sort <<< "$out") != $'0: 0\n1: 0' ]]; then
        printf 'left on the nodes (/dev/shm entries, then the count of FUSE mounts):\n%s\n' "$out" >&2
        return 1
    fi
}

# ---- the virtual cluster itself ----------------------------------------------

@test "vnodes: two nodes, each with its own hostname and namespaces" {
    run vn_srun -N 2 --ntasks-per-node=1 --label sh -c \
        'echo $(hostname) $(readlink /proc/self/ns/net /proc/self/ns/uts /proc/self/ns/ipc /proc/self/ns/mnt)'
    assert_status 0
    [[ ${#lines[@]} -eq 2 ]] || { echo "expected 2 lines: $output" >&2; return 1; }
    local l0 l1 host ns
    l0=$(grep '^0: ' <<< "$output") && l1=$(grep '^1: ' <<< "$output")
    [[ $l0 == "0: vn1 "* && $l1 == "1: vn2 "* ]] || { echo "hostnames: $output" >&2; return 1; }
    # Four namespaces, none the login node's, none shared between the nodes.
    for ns in net uts ipc mnt; do
        host=$(readlink "/proc/self/ns/$ns")
        [[ $l0 == *"$ns:["* && $l0 != *" $host"* && $l1 != *" $host"* ]] \
            || { echo "$ns: login node has $host; $output" >&2; return 1; }
        [[ $(grep -o "$ns:\[[0-9]*\]" <<< "$l0") != $(grep -o "$ns:\[[0-9]*\]" <<< "$l1") ]] \
            || { echo "$ns shared by the nodes: $output" >&2; return 1; }
    done
}

@test "vnodes: /tmp, /dev/shm and the spool are each node's own; the shared directory is shared" {
    local f=vn-test.$$
    run vn_srun -w vn1 -n 1 sh -c "touch /tmp/$f /dev/shm/$f $vn_work/$f && ls /tmp/$f /dev/shm/$f"
    assert_status 0
    [[ -e $vn_work/$f ]] || { echo "the shared file is not on the login node" >&2; return 1; }
    [[ ! -e /tmp/$f && ! -e /dev/shm/$f ]] || { echo "vn1's /tmp or /dev/shm is the login node's" >&2; return 1; }
    run vn_srun -w vn2 -n 1 sh -c "ls $vn_work/$f; ls /tmp/$f /dev/shm/$f"
    assert_status 2
    assert_output_has "$vn_work/$f"
    assert_output_has "cannot access '/tmp/$f'"
    assert_output_has "cannot access '/dev/shm/$f'"
    run vn_srun -w vn1 -n 1 rm /tmp/$f /dev/shm/$f
    assert_status 0
    # Slurm's spool directory (where the PMIx server's files go) shows each
    # node its own only.
    run vn_srun -N 2 --ntasks-per-node=1 --label ls "$VN_DIR/spool"
    assert_status 0
    [[ $(sort <<< "$output") == $'0: vn1\n1: vn2' ]] || { echo "spools: $output" >&2; return 1; }
}

@test "vnodes: the nodes reach each other and the login node, and nothing else" {
    local conf port
    conf=$(< "$SLURM_CONF")
    port=$(sed -n 's/^SlurmdPort=//p' <<< "$conf")
    # vn2's slurmd, from vn1; the login node's slurmctld is reached the same
    # way by every job. No default route: anything else is unreachable.
    run vn_srun -w vn1 -n 1 bash -c "
        exec 3<>/dev/tcp/vn2/$port && echo vn2 reached
        ip route
        exec 4<>/dev/tcp/192.0.2.1/80 || echo outside unreachable"
    assert_status 0
    assert_output_has "vn2 reached"
    assert_output_has "outside unreachable"
    assert_output_has "Network is unreachable"
    assert_output_lacks "default"
}

@test "make install onto the shared directory: every node runs that copy" {
    [[ -x $VN_LUSTRE/ch/bin/ch-run && -f $VN_LUSTRE/ch/share/man/man1/ch-run.1 ]] \
        || { echo "make install PREFIX=$VN_LUSTRE/ch installed no ch-run or no man page" >&2; return 1; }
    # The installed copy is this build's.
    cmp "$vn_prefix/bin/ch-run" "$ch_bin/ch-run"
    run vn_srun -N 2 --ntasks-per-node=1 --label sh -c 'command -v ch-run'
    assert_status 0
    [[ $(sort <<< "$output") == "0: $vn_prefix/bin/ch-run"$'\n'"1: $vn_prefix/bin/ch-run" ]] \
        || { echo "ch-run on the nodes: $output" >&2; return 1; }
    # The image make install puts beside it runs on both nodes.
    run vn_srun -N 2 --ntasks-per-node=1 ch-run "$VN_LUSTRE/ch/share/chtools/busybox" -- hostname
    assert_status 0
    [[ $(sort <<< "$output" | tr '\n' ' ') == "vn1 vn2 " ]] || { echo "hostnames: $output" >&2; return 1; }
}

# ---- --join: one container per node ---------------------------------------------

# join_layout A+B IMG: srun with A tasks on vn1 and B on vn2, each
# `ch-run -v --join IMG`. Every node has one container, its own, that all its
# tasks share, and each task counted its node's tasks: A on vn1, B on vn2.
join_layout() {
    local a=${1%+*} b=${1#*+} line t host ns want counts
    vn_layout "$1"
    # The sleep keeps each container up while the others start, so no two
    # containers can have the same namespace inodes (the kernel reuses them).
    run vn_srun "${vn_args[@]}" --label ch-run -v --join "$2" -- \
        sh -c 'echo "at $(hostname) $(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/user)"; sleep 1'
    assert_status 0
    declare -A tasks=() mnts=() hosts_of=()
    for line in "${lines[@]}"; do
        [[ $line =~ ^\ *([0-9]+):\ at\ (vn[12])\ (mnt:\[[0-9]+\])\ (user:\[[0-9]+\])$ ]] || continue
        t=${BASH_REMATCH[1]} host=${BASH_REMATCH[2]}
        hosts_of[$t]=$host
        tasks[$host]=$((${tasks[$host]:-0} + 1))
        ns="${BASH_REMATCH[3]} ${BASH_REMATCH[4]}"
        if [[ -n ${mnts[$host]:-} && ${mnts[$host]} != "$ns" ]]; then
            echo "tasks on $host are in different containers: ${mnts[$host]} and $ns" >&2
            echo "$output" >&2
            return 1
        fi
        mnts[$host]=$ns
    done
    if [[ ${tasks[vn1]:-0} -ne $a || ${tasks[vn2]:-0} -ne $b ]]; then
        echo "expected $a tasks on vn1 and $b on vn2, got ${tasks[vn1]:-0} and ${tasks[vn2]:-0}:" >&2
        echo "$output" >&2
        return 1
    fi
    # Each task's own count, from -v: its node's number of tasks. A lone
    # peer has nobody to meet and may say nothing; if it counted more, its
    # group would wait for them, and vn_assert_clean finds the waiting holder.
    for t in "${!hosts_of[@]}"; do
        want=$a
        [[ ${hosts_of[$t]} == vn2 ]] && want=$b
        counts=$(grep -oE "^ *$t: ch-run\[[0-9]+\]: join: (first peer|peer [0-9]+) of [0-9]+ in group " <<< "$output" \
            | grep -oE 'of [0-9]+' | sort -u || true)
        [[ $counts == "of $want" || ($want -eq 1 && -z $counts) ]] \
            || { echo "task $t on ${hosts_of[$t]} counted '$counts', not $want peers:" >&2; echo "$output" >&2; return 1; }
    done
    vn_assert_clean
}

@test "--join across nodes, 3+1 tasks, directory image" { join_layout 3+1 "$vn_img/busybox"; }
@test "--join across nodes, 3+1 tasks, SquashFS image" { join_layout 3+1 "$vn_img/busybox.sqfs"; }
@test "--join across nodes, 1+3 tasks, directory image" { join_layout 1+3 "$vn_img/busybox"; }
@test "--join across nodes, 1+3 tasks, SquashFS image" { join_layout 1+3 "$vn_img/busybox.sqfs"; }
@test "--join across nodes, 7+1 tasks, directory image" { join_layout 7+1 "$vn_img/busybox"; }
@test "--join across nodes, 7+1 tasks, SquashFS image" { join_layout 7+1 "$vn_img/busybox.sqfs"; }
@test "--join across nodes, 2+2 tasks, directory image" { join_layout 2+2 "$vn_img/busybox"; }
@test "--join across nodes, 2+2 tasks, SquashFS image" { join_layout 2+2 "$vn_img/busybox.sqfs"; }

# What breaks Charliecloud on uneven layouts, forced with --join-ct: a count
# that is wrong for both nodes of a 3+1 layout. On vn2 the lone peer's group
# waits for a second peer that never comes; on vn1 one of the three is left
# over the same way. Each group gives up at the timeout and says so, naming
# its tag and who arrived, and nothing stays on the nodes.
@test "--join-ct wrong for both nodes of a 3+1 layout: each node says so, nothing left" {
    vn_layout 3+1
    # -v: the waiting side's holder says it only then (its command is done).
    run vn_srun "${vn_args[@]}" --label ch-run -v --join-ct=2 --join-timeout=2 "$vn_img/busybox.sqfs" -- /bin/true
    local n
    n=$(grep -cE '^ *[0-3]: ch-run(\[[0-9]+\])?: (warning: |error: )?join group slurm-[0-9]+\.[0-9]+: timed out after 2 s: 1 of 2 peers' <<< "$output" || true)
    # On failure, the join and error lines first: CI shows only the start.
    [[ $n -eq 2 ]] || { echo "expected one timeout on each node, got $n:" >&2
                        grep -E 'join|error|warning' <<< "$output" >&2; echo "$output" >&2; return 1; }
    vn_assert_clean
}

# ---- MPI across nodes ---------------------------------------------------------

# mpi_layout A+B IMG: srun --mpi=pmix, A ranks on vn1 and B on vn2, each in
# `ch-run --join IMG`: every rank checks an allreduce over all of them, and
# says which node it ran on.
mpi_layout() {
    local a=${1%+*} b=${1#*+} n ok
    n=$((a + b))
    need_mpi
    vn_layout "$1"
    run vn_srun --mpi=pmix "${vn_args[@]}" ch-run --join "$2" -- env CH_EXPECT_SIZE="$n" /opt/mpi/mpi_check
    assert_status 0
    assert_output_has "mpi_check: $n ranks, all ok"
    ok=$(grep -cE "^rank [0-9]+/$n on vn1: allreduce sum [0-9]+, expected [0-9]+: ok$" <<< "$output" || true)
    [[ $ok -eq $a ]] || { echo "expected $a ranks ok on vn1, got $ok:" >&2; echo "$output" >&2; return 1; }
    ok=$(grep -cE "^rank [0-9]+/$n on vn2: allreduce sum [0-9]+, expected [0-9]+: ok$" <<< "$output" || true)
    [[ $ok -eq $b ]] || { echo "expected $b ranks ok on vn2, got $ok:" >&2; echo "$output" >&2; return 1; }
    assert_quiet
    vn_assert_clean
}

@test "srun --mpi=pmix, 3+1 ranks, ch-run --join, directory image" { mpi_layout 3+1 "$vn_img/mpi"; }
@test "srun --mpi=pmix, 3+1 ranks, ch-run --join, SquashFS image" { mpi_layout 3+1 "$vn_img/mpi.sqfs"; }
@test "srun --mpi=pmix, 7+1 ranks, ch-run --join, directory image" { mpi_layout 7+1 "$vn_img/mpi"; }
@test "srun --mpi=pmix, 7+1 ranks, ch-run --join, SquashFS image" { mpi_layout 7+1 "$vn_img/mpi.sqfs"; }
@test "srun --mpi=pmix, 2+2 ranks, ch-run --join, directory image" { mpi_layout 2+2 "$vn_img/mpi"; }
@test "srun --mpi=pmix, 2+2 ranks, ch-run --join, SquashFS image" { mpi_layout 2+2 "$vn_img/mpi.sqfs"; }

# ---- many short peers ---------------------------------------------------------

# true16 IMG: 16 `ch-run --join IMG -- /bin/true` across both nodes, five
# times: 8+8, then 15+1 (one node's group is complete at once, the other's
# takes fifteen), and nothing is left after any of them.
true16() {
    local i
    for i in 1 2 3 4 5; do
        vn_layout 8+8
        ((i == 5)) && vn_layout 15+1
        run vn_srun "${vn_args[@]}" ch-run --join "$1" -- /bin/true
        assert_status 0
        [[ -z $output ]] || { echo "round $i printed: $output" >&2; return 1; }
    done
    vn_assert_clean
}

@test "16 × ch-run --join IMG -- /bin/true across both nodes, directory image" { true16 "$vn_img/busybox"; }
@test "16 × ch-run --join IMG -- /bin/true across both nodes, SquashFS image" { true16 "$vn_img/busybox.sqfs"; }

# ---- the fixture: start, crash, restart, stop -----------------------------------

@test "vnodes.sh: a second cluster beside the first; killed, restarted and stopped, it leaves nothing" {
    only_root
    [[ $(basename "$ch_bin") != bin-san ]] || skip "the fixture, not ch-run: the plain pass tests it"
    # Not under /tmp: the nodes have their own.
    local vn=$VN_DIR.test-$$ pids p
    vn2_dir=$vn
    VN_DIR=$vn "$BATS_TEST_DIRNAME/fixtures/vnodes.sh" start 1
    run env SLURM_CONF="$vn/slurm.conf" timeout 120 srun --quiet -n 1 sh -c 'hostname; ip -4 -o addr show eth0'
    assert_status 0
    assert_line_is 0 vn1
    # Its own subnet, not the first cluster's.
    assert_output_lacks " ${VN_SUBNET%.0/24}."
    # A crash while a job runs: every daemon killed at once, the job's step
    # daemon and its process left behind.
    local id
    id=$(printf '%s' "$(realpath -m "$vn")" | sha1sum | cut -c1-6)
    SLURM_CONF="$vn/slurm.conf" sbatch --quiet -o /dev/null --wrap 'exec sleep 600'
    sleeper() { ip netns pids "chvn-$id-vn1" | while read -r p; do [[ $(cat "/proc/$p/comm") == sleep ]] && echo "$p"; done; }
    has_sleeper() { [[ -n $(sleeper) ]]; }
    wait_until 60 has_sleeper
    sleep_pid=$(sleeper)
    pids=$(cat "$vn"/run/*.pid "$vn/munge/munged.pid")
    for p in $pids; do kill -KILL "$p"; done
    VN_DIR=$vn "$BATS_TEST_DIRNAME/fixtures/vnodes.sh" start 1
    ! kill -0 "$sleep_pid" 2>/dev/null || { echo "the crashed cluster's job still runs" >&2; return 1; }
    run env SLURM_CONF="$vn/slurm.conf" timeout 120 srun --quiet -n 1 hostname
    assert_status 0
    assert_line_is 0 vn1
    VN_DIR=$vn "$BATS_TEST_DIRNAME/fixtures/vnodes.sh" stop
    run env VN_DIR="$vn" "$BATS_TEST_DIRNAME/fixtures/vnodes.sh" check-gone
    assert_status 0
    [[ -z $output ]] || { echo "left: $output" >&2; return 1; }
    # Nothing by name either (the fixture's own check, checked).
    run ip netns list
    assert_output_lacks "chvn-$id-"
    run ip -o link show
    assert_output_lacks "chv$id-"
    assert_output_lacks "chvb$id"
    # The first cluster is untouched.
    run vn_srun -N 2 --ntasks-per-node=1 hostname
    assert_status 0
    vn2_dir=
    rm -rf "$vn"
}

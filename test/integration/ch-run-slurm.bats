# ch-run under a real Slurm and a real Open MPI, on this one node: the
# cluster stage.sh starts (fixtures/slurm.bash) and the MPI image
# (fixtures/mpi-image.sh, the recipe of examples/mpi). Every test runs as the
# pass's user (chtest, then root), with the image as a directory and as a
# SquashFS file.

load common

setup() {
    need_scope standard
    need_slurm
    need_mpi_image
    ch_mpi_dir=$ch_img/mpi
    ch_mpi_sqfs=$ch_img/mpi.sqfs
    # Test-private storage: its mnt/ is where SquashFS images are mounted.
    mkdir -p "$CH_IMAGE_STORAGE"
    touch "$BATS_TEST_TMPDIR/start"
}

teardown() {
    # A failed test may leave its job behind: end it before the next test.
    [[ -n ${ch_job:-} ]] && scancel "$ch_job" 2>/dev/null
    return 0
}

need_join() {
    "$ch_bin/ch-run" --help 2>&1 | grep -q -- '--join' \
        || skip_env "this ch-run has no --join"
}

# A bounded srun: a hang fails the test instead of the whole run. --quiet:
# no "job N queued and waiting for resources" when the previous test's job
# is still completing (errors are still printed).
srun_() { timeout 300 srun --quiet "$@"; }

# assert_mpi_ok N: the last `run` is mpi_check's output for N ranks, all ok.
assert_mpi_ok() {
    local n=$1 ok
    assert_status 0
    assert_output_has "mpi_check: $n ranks, all ok"
    ok=$(grep -cE "^rank [0-9]+/$n on .*: ok$" <<<"$output" || true)
    if [[ $ok -ne $n ]]; then
        printf 'expected %s ranks to say ok, %s did:\n%s\n' "$n" "$ok" "$output" >&2
        return 1
    fi
    assert_quiet
}

# hostnames IMG: srun -n 4 ch-run IMG -- hostname: four containers, each
# sees the node's name (the UTS namespace is the host's).
hostnames() {
    run srun_ -n 4 "$ch_bin/ch-run" "$1" -- hostname
    assert_status 0
    [[ ${#lines[@]} -eq 4 ]] || { echo "expected 4 lines: $output" >&2; return 1; }
    local l
    for l in "${lines[@]}"; do
        [[ $l == "$(hostname)" ]] || { echo "unexpected line: $l" >&2; return 1; }
    done
}

@test "srun -n 4 ch-run DIR -- hostname" {
    hostnames "$ch_mpi_dir"
}

@test "srun -n 4 ch-run SQFS -- hostname" {
    hostnames "$ch_mpi_sqfs"
    assert_empty_dir "$CH_IMAGE_STORAGE/mnt"
}

@test "srun tasks get Slurm's environment inside the container" {
    run srun_ -n 2 "$ch_bin/ch-run" "$ch_mpi_dir" -- sh -c 'echo "$SLURM_PROCID/$SLURM_NTASKS $SLURM_JOB_ID"'
    assert_status 0
    [[ $(sort <<<"$output" | cut -d' ' -f1 | tr '\n' ' ') == "0/2 1/2 " ]] \
        || { echo "unexpected: $output" >&2; return 1; }
}

# pmix_join IMG: the ranks wire up through Slurm's PMIx server, one
# container for all four, and each checks the allreduce.
pmix_join() {
    need_join
    CH_EXPECT_SIZE=4 run srun_ --mpi=pmix -n 4 "$ch_bin/ch-run" --join "$1" -- /opt/mpi/mpi_check
    assert_mpi_ok 4
}

@test "srun --mpi=pmix -n 4 ch-run --join DIR -- mpi_check" {
    pmix_join "$ch_mpi_dir"
}

@test "srun --mpi=pmix -n 4 ch-run --join SQFS -- mpi_check" {
    pmix_join "$ch_mpi_sqfs"
    assert_empty_dir "$CH_IMAGE_STORAGE/mnt"
}

# join_true IMG: 16 ranks of /bin/true, which exit at once: every peer must
# still find the namespaces (Charliecloud 0.31 loses this race). Ten steps in
# a row in one allocation, as a batch script runs them.
join_true() {
    need_join
    run timeout 600 salloc --quiet -n 16 bash -c '
        for i in $(seq 10); do
            srun --quiet -n 16 "$0" --join "$1" -- /bin/true || { echo "step $i: exit $?"; exit 1; }
        done' "$ch_bin/ch-run" "$1"
    assert_status 0
    [[ -z $output ]] || { printf 'expected no output, got:\n%s\n' "$output" >&2; return 1; }
}

@test "srun -n 16 ch-run --join DIR -- /bin/true, ten times" {
    join_true "$ch_mpi_dir"
}

@test "srun -n 16 ch-run --join SQFS -- /bin/true, ten times" {
    join_true "$ch_mpi_sqfs"
    assert_empty_dir "$CH_IMAGE_STORAGE/mnt"
}

# mpirun_host IMG: the host's Open MPI launches the ranks, each in its own
# container (no Slurm). Same Open MPI version inside and out.
mpirun_host() {
    command -v mpirun >/dev/null || skip_env "mpirun not installed (Debian: openmpi-bin)"
    # Root may run mpirun only when it says so; 4 ranks on fewer cores.
    # Nothing about CMA: ch-run turns it off without --join (one user
    # namespace per rank), or every rank would warn.
    CH_EXPECT_SIZE=4 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        OMPI_MCA_rmaps_base_oversubscribe=1 \
        run timeout 300 mpirun -np 4 "$ch_bin/ch-run" "$1" -- /opt/mpi/mpi_check
    assert_mpi_ok 4
}

@test "mpirun -np 4 ch-run DIR -- mpi_check (host's mpirun)" {
    mpirun_host "$ch_mpi_dir"
}

@test "mpirun -np 4 ch-run SQFS -- mpi_check (host's mpirun)" {
    mpirun_host "$ch_mpi_sqfs"
    assert_empty_dir "$CH_IMAGE_STORAGE/mnt"
}

# ---- ending jobs: nothing may outlive them -------------------------------------

# marker_pids TAG: this user's processes running `sleep TAG`.
marker_pids() { pgrep -u "$(id -u)" -fx "sleep $1" || true; }
count_is() { [[ $(marker_pids "$2" | wc -l) -eq $1 ]]; }
job_gone() { [[ -z $(squeue -h -t PD,CF,R,S,CG -j "$1" -o %i 2>/dev/null) ]]; }

# assert_all_gone TAG IMG: no sleeps, no FUSE server for the storage mount, no
# mount of it anywhere on the host, nothing new of ours in /dev/shm.
assert_all_gone() {
    local mnt=$CH_IMAGE_STORAGE/mnt left
    wait_until 30 count_is 0 "$1" || { echo "processes left: $(marker_pids "$1")" >&2; return 1; }
    if [[ $2 == *.sqfs ]]; then
        wait_until 30 no_server "$mnt" || { echo "FUSE server left: $(server_pids "$mnt")" >&2; return 1; }
        ! grep -qF " $mnt " /proc/self/mountinfo || { echo "mount left at $mnt" >&2; return 1; }
        assert_empty_dir "$mnt"
    fi
    # --join's rendezvous objects are named after the user, job and step;
    # other tests on this machine (other jobs, other users) may be using
    # /dev/shm at the same time, so only this job's names count.
    left=$(find /dev/shm -maxdepth 1 -mindepth 1 -user "$(id -u)" -newer "$BATS_TEST_TMPDIR/start" \
        \( -name "*[!0-9]${ch_job}" -o -name "*[!0-9]${ch_job}[!0-9]*" \) 2>/dev/null)
    [[ -z $left ]] || { printf 'left in /dev/shm:\n%s\n' "$left" >&2; return 1; }
}

# start_sleepers IMG TAG [JOIN...]: a batch job of 4 tasks sleeping in
# containers; returns once all four are running.
start_sleepers() {
    local img=$1 tag=$2
    shift 2
    ch_job=$(sbatch --parsable -n 4 -o "$BATS_TEST_TMPDIR/job.out" \
        --wrap "srun -n 4 $ch_bin/ch-run $* $img -- sleep $tag") || return 1
    wait_until 120 count_is 4 "$tag" || {
        echo "job $ch_job: $(marker_pids "$tag" | wc -l) sleepers running; output:" >&2
        cat "$BATS_TEST_TMPDIR/job.out" >&2
        return 1
    }
}

# cancel_case IMG [JOIN...]: scancel of a running job ends everything.
cancel_case() {
    local tag=$((3000 + RANDOM % 1000))
    start_sleepers "$1" "$tag" "${@:2}"
    scancel "$ch_job"
    wait_until 60 job_gone "$ch_job" || { echo "job $ch_job still listed" >&2; return 1; }
    assert_all_gone "$tag" "$1"
}

# term_case IMG [JOIN...]: SIGTERM to the step's tasks (only TERM: Slurm's
# KILL after KillWait does not come for a signal sent this way).
term_case() {
    local tag=$((3000 + RANDOM % 1000))
    start_sleepers "$1" "$tag" "${@:2}"
    scancel --signal=TERM "$ch_job.0"
    assert_all_gone "$tag" "$1"
    wait_until 60 job_gone "$ch_job" || { echo "job $ch_job still listed" >&2; return 1; }
}

@test "scancel ends the containers of a running job (DIR)" {
    cancel_case "$ch_mpi_dir"
}

@test "scancel ends the containers and FUSE servers of a running job (SQFS)" {
    cancel_case "$ch_mpi_sqfs"
}

@test "scancel ends a --join job (SQFS)" {
    need_join
    cancel_case "$ch_mpi_sqfs" --join
}

@test "SIGTERM to a step ends its containers (DIR)" {
    term_case "$ch_mpi_dir"
}

@test "SIGTERM to a step ends its containers and FUSE servers (SQFS)" {
    term_case "$ch_mpi_sqfs"
}

@test "SIGTERM to a --join step ends everything (SQFS)" {
    need_join
    term_case "$ch_mpi_sqfs" --join
}

# ---- the fixture itself ----------------------------------------------------------

@test "a second test cluster starts, runs a job, and stops leaving nothing" {
    only_root
    # shellcheck source=test/integration/fixtures/slurm.bash
    source "$BATS_TEST_DIRNAME/fixtures/slurm.bash"
    local d=$BATS_TEST_TMPDIR/cluster
    slurm_setup "$d" 4
    slurm_start "$d" || { slurm_stop "$d"; return 1; }
    run env SLURM_CONF="$d/slurm.conf" timeout 120 srun -n 2 hostname
    # What the check below looks for is there while the cluster runs.
    local running
    running=$(slurm_procs "$d")
    slurm_stop "$d"
    [[ $(wc -l <<<"$running") -ge 3 ]] || { echo "expected munged, slurmctld, slurmd: $running" >&2; return 1; }
    assert_status 0
    [[ ${#lines[@]} -eq 2 ]]
    [[ -z $(slurm_procs "$d") ]] || { echo "left running: $(slurm_procs "$d")" >&2; return 1; }
    for f in "$d"/run/*.pid "$d"/munge/munged.pid; do
        [[ -e $f ]] || continue
        ! kill -0 "$(<"$f")" 2>/dev/null || { echo "daemon of $f still running" >&2; return 1; }
    done
}

# The job scripts in examples/, submitted as users submit them (sbatch, with
# ch-run on PATH), to the test cluster stage.sh starts, with the MPI image
# examples/mpi/image.sh builds (fixtures/mpi-image.sh). Each waits for the job
# and checks its output, which must hold no warnings.

load common

setup() {
    need_scope standard
    need_slurm
    need_mpi_image
    ch_examples=$(dirname "$ch_img")/examples
    [[ -d $ch_examples ]] || skip_env "examples not staged (stage.sh copies them)"
    ch_mpi_dir=$ch_img/mpi
    ch_mpi_sqfs=$ch_img/mpi.sqfs
    mkdir -p "$CH_IMAGE_STORAGE"
    export PATH=$ch_bin:$PATH
    cd "$BATS_TEST_TMPDIR" || return 1
}

need_join() {
    "$ch_bin/ch-run" --help 2>&1 | grep -q -- '--join' \
        || skip_env "this ch-run has no --join"
}

# submit SCRIPT ARG...: sbatch --wait, output in job.out; `run` sees the job's
# exit status and output.
submit() {
    run timeout 300 sbatch --wait -o "$BATS_TEST_TMPDIR/job.out" "$@"
    if [[ $status -ne 0 ]]; then
        printf 'sbatch %s: exit %s\n%s\njob output:\n' "$*" "$status" "$output" >&2
        cat "$BATS_TEST_TMPDIR/job.out" >&2
        return 1
    fi
    run cat "$BATS_TEST_TMPDIR/job.out"
}

assert_quiet() {
    local bad
    bad=$(grep -iE 'warn|error|not found|denied' <<<"$output" || true)
    if [[ -n $bad ]]; then
        printf 'unexpected warnings or errors:\n%s\nfull output:\n%s\n' "$bad" "$output" >&2
        return 1
    fi
}

assert_mpi_ok() { # assert_mpi_ok N
    local ok
    assert_output_has "mpi_check: $1 ranks, all ok"
    ok=$(grep -cE "^rank [0-9]+/$1 on .*: ok$" <<<"$output" || true)
    [[ $ok -eq $1 ]] || { printf 'expected %s ok ranks:\n%s\n' "$1" "$output" >&2; return 1; }
    assert_quiet
}

@test "examples/slurm/srun.sh: one container per task" {
    submit "$ch_examples/slurm/srun.sh" "$ch_mpi_dir"
    [[ ${#lines[@]} -eq 4 ]] || { echo "expected 4 lines: $output" >&2; return 1; }
    local i
    for i in 0 1 2 3; do
        assert_output_has "task $i of 4 on $(hostname): Debian GNU/Linux 12 (bookworm)"
    done
    assert_quiet
}

@test "examples/slurm/join.sh: MPI ranks in one container per node" {
    need_join
    submit "$ch_examples/slurm/join.sh" "$ch_mpi_dir"
    assert_mpi_ok 4
}

@test "examples/slurm/squash.sh: SquashFS on a shared path" {
    need_join
    # The "shared filesystem": a directory other than the staging area.
    mkdir -p "$BATS_TEST_TMPDIR/shared"
    cp "$ch_mpi_sqfs" "$BATS_TEST_TMPDIR/shared/mpi.sqfs"
    submit "$ch_examples/slurm/squash.sh" "$BATS_TEST_TMPDIR/shared/mpi.sqfs"
    assert_mpi_ok 4
    assert_empty_dir "$CH_IMAGE_STORAGE/mnt"
}

@test "examples/slurm/squash.sh refuses a directory" {
    run timeout 300 sbatch --wait -o "$BATS_TEST_TMPDIR/job.out" "$ch_examples/slurm/squash.sh" "$ch_mpi_dir"
    [[ $status -ne 0 ]]
    run cat "$BATS_TEST_TMPDIR/job.out"
    assert_output_has "is not a SquashFS file"
}

@test "examples/slurm/array.sh: a job array, one container per task" {
    # The script names its own output files (one per array task), in the
    # directory it is submitted from.
    run timeout 300 sbatch --wait "$ch_examples/slurm/array.sh" "$ch_mpi_sqfs"
    assert_status 0
    local job=${output##* } k n f
    for k in 0 1 2 3; do
        f=$BATS_TEST_TMPDIR/ch-array-${job}_$k.out
        [[ -f $f ]] || { echo "no output $f; have: $(ls "$BATS_TEST_TMPDIR")" >&2; return 1; }
        n=$((1000 * (k + 1)))
        run cat "$f"
        assert_line_is 0 "array task $k of job $job: sum 1..$n = $((n * (n + 1) / 2))"
        assert_quiet
    done
    assert_empty_dir "$CH_IMAGE_STORAGE/mnt"
}

@test "examples/mpi/mpirun.sh: the host's mpirun inside an allocation" {
    command -v mpirun >/dev/null || skip_env "mpirun not installed (Debian: openmpi-bin)"
    # Root may run mpirun only when it says so (sbatch passes the environment).
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        submit "$ch_examples/mpi/mpirun.sh" "$ch_mpi_dir"
    assert_mpi_ok 4
}

@test "examples/mpi/image.sh built the test image: mpi_check runs alone" {
    # A singleton (no launcher) is a world of one.
    run "$ch_bin/ch-run" "$ch_mpi_dir" -- /opt/mpi/mpi_check
    assert_status 0
    assert_output_has "mpi_check: 1 ranks, all ok"
    run "$ch_bin/ch-run" "$ch_mpi_dir" -- sh -c 'command -v gcc cc || echo "no compiler"'
    assert_output_has "no compiler"
}

@test "examples/python/job.sh: the image's python3 in every task" {
    cd "$ch_examples/python" || return 1
    submit job.sh "$ch_mpi_dir"
    [[ ${#lines[@]} -eq 2 ]] || { echo "expected 2 lines: $output" >&2; return 1; }
    assert_output_has "python task 0/2 on $(hostname): Python 3.11"
    assert_output_has "python task 1/2 on $(hostname): Python 3.11"
    assert_output_has "at /usr/bin/python3"
    [[ $(grep -c ': ok$' <<<"$output") -eq 2 ]]
    assert_quiet
}

# slurm-setup.sh: what the fan-out and compute benchmarks share, sourced by
# them after lib.sh (not a benchmark itself): a one-node Slurm cluster in the
# work area (test/integration/fixtures/slurm.bash; root starts the daemons,
# they are stopped when the benchmark exits) and the MPI image of
# examples/mpi (fixtures/mpi-image.sh, whose tarball is cached in
# /var/tmp/ch-test-cache, so only the first run ever builds it).
#
# bench_slurm: start the cluster (once per benchmark process); sets
#   SLURM_CONF and bench_slurm_user (who submits: CH_BENCH_USER as root).
#   Without root it needs CH_BENCH_SLURM_CONF (a cluster someone started) and
#   returns 1 otherwise.
# bench_mpi_image: the image as a directory and as SquashFS in the work area;
#   sets mpi_dir and mpi_sqfs; returns 1 if it can't be built.
# bench_srun_as USER CMD...: CMD as USER with SLURM_CONF (bench_as's
#   environment otherwise).
# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # bench_top and friends come from lib.sh; the benchmarks use what this sets

# shellcheck source=test/integration/fixtures/slurm.bash
source "$bench_top/test/integration/fixtures/slurm.bash"

bench_slurm() {
    if [[ -n ${CH_BENCH_SLURM_CONF:-} ]]; then
        SLURM_CONF=$CH_BENCH_SLURM_CONF
        bench_slurm_user=$(id -un)
        export SLURM_CONF
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || return 1
    command -v slurmctld >/dev/null && command -v munged >/dev/null || return 1
    local d=$CH_BENCH_DIR/slurm
    if [[ ! -e $d/slurm.conf ]]; then
        bench_at_exit "slurm_stop $d"
        slurm_setup "$d" 64 && slurm_start "$d" || return 1
    fi
    SLURM_CONF=$d/slurm.conf
    export SLURM_CONF
    bench_slurm_user=$(bench_users | tail -n 1)
}

bench_mpi_image() {
    mpi_dir=$CH_BENCH_DIR/img/mpi
    mpi_sqfs=$CH_BENCH_DIR/img/mpi.sqfs
    [[ -d $mpi_dir && -f $mpi_sqfs ]] && return 0
    mkdir -p "$CH_BENCH_DIR/img"
    CH_TEST_BIN=$bench_top/bin CH_TEST_IMG=$CH_BENCH_DIR/img CH_TEST_SCOPE=standard \
        bash "$bench_top/test/integration/fixtures/mpi-image.sh" | bench_indent
    chmod -R a+rX "$CH_BENCH_DIR/img"
    [[ -d $mpi_dir && -f $mpi_sqfs ]]
}

bench_srun_as() {
    local user=$1
    shift
    bench_as "$user" env SLURM_CONF="$SLURM_CONF" "$@"
}

# bench_has_join CH-RUN: does this ch-run have --join?
bench_has_join() { "$1" --help 2>&1 | grep -q -- '--join'; }

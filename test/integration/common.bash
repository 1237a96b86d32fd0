# shellcheck shell=bash
# common.bash: loaded by every bats suite. test/check.sh stages the tools,
# images and suites where the unprivileged test user can read them and sets:
#   CH_TEST_BIN     directory holding ch-run, ch-convert, ...
#   CH_TEST_IMG     directory holding fixture images (busybox/, busybox.sqfs, ...)
#   CH_TEST_AS      "root" or "user": who runs this pass
#   CH_TEST_MUST_WORK=1 (in CI) turns every environment skip into a failure.
# Shared variables are ch_-prefixed (Charliecloud's bats habit).

# `run -N CMD` (an expected exit status) needs it said.
bats_require_minimum_version 1.5.0

ch_bin=${CH_TEST_BIN:?CH_TEST_BIN not set: run through test/check.sh}
ch_img=${CH_TEST_IMG:?CH_TEST_IMG not set: run through test/check.sh}
ch_busybox=$ch_img/busybox
export USER=${USER:-$(id -un)}
# Keep each test's storage private and out of the user's real storage.
export CH_IMAGE_STORAGE=$BATS_TEST_TMPDIR/storage 2>/dev/null || true

ch-run()     { "$ch_bin/ch-run" "$@"; }
ch-checkns() { "$ch_bin/ch-checkns" "$@"; }
ch-convert() { "$ch_bin/ch-convert" "$@"; }
ch-image()   { "$ch_bin/ch-image" "$@"; }

# Skip for a missing environment feature, unless CI says it must work.
skip_env() {
    if [[ ${CH_TEST_MUST_WORK:-0} == 1 ]]; then
        echo "environment lacks what this test needs: $*" >&2
        return 1
    fi
    skip "$*"
}
as_root()  { [[ $(id -u) -eq 0 ]]; }
# For tests that only make sense for one kind of invoker (not environment
# skips: the other pass covers the other case).
only_root() { as_root || skip "root-only test (the root pass runs it)"; }
only_user() { ! as_root || skip "unprivileged-only test (the user pass runs it)"; }

# assert_status N: the last `run` exited N.
assert_status() {
    if [[ $status -ne $1 ]]; then
        printf 'expected exit status %s, got %s\noutput:\n%s\n' "$1" "$status" "$output" >&2
        return 1
    fi
}
# assert_output_has STRING: the last `run` printed STRING somewhere.
assert_output_has() {
    if [[ $output != *"$1"* ]]; then
        printf 'expected output to contain: %s\noutput:\n%s\n' "$1" "$output" >&2
        return 1
    fi
}
assert_output_lacks() {
    if [[ $output == *"$1"* ]]; then
        printf 'expected output not to contain: %s\noutput:\n%s\n' "$1" "$output" >&2
        return 1
    fi
}
# assert_line_is N STRING: line N (0-based) of the last `run` is exactly STRING.
assert_line_is() {
    if [[ ${lines[$1]} != "$2" ]]; then
        printf 'expected line %s to be: %s\ngot: %s\noutput:\n%s\n' "$1" "$2" "${lines[$1]}" "$output" >&2
        return 1
    fi
}
# assert_empty_dir DIR: nothing was left behind in DIR.
assert_empty_dir() {
    local left
    left=$(ls -A "$1" 2>/dev/null)
    if [[ -n $left ]]; then
        printf 'expected %s to be empty, found:\n%s\n' "$1" "$left" >&2
        return 1
    fi
}

# need_scope standard|full: run this test only at that scope or wider.
need_scope() {
    local want=$1 have=${CH_TEST_SCOPE:-standard}
    declare -A rank=([quick]=0 [standard]=1 [full]=2)
    ((${rank[$have]} >= ${rank[$want]})) || skip "needs scope $want (this run: $have)"
}

# check_clean OUT: nothing at OUT and no staging debris beside it.
check_clean() {
    if [[ -e $1 || -L $1 ]]; then
        echo "something was left at $1" >&2
        return 1
    fi
    local debris
    debris=$(compgen -G "$(dirname "$1")/.*.ch-staging.*" || true)
    if [[ -n $debris ]]; then
        printf 'staging debris left:\n%s\n' "$debris" >&2
        return 1
    fi
}

# server_pids MNT: live (not zombie) FUSE servers started with -m MNT.
server_pids() {
    local p
    for p in $(pgrep -x ch-squashfuse); do
        [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) == Z ]] && continue
        tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- " -m $1 " && echo "$p"
    done
    return 0
}

# wait_until SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds.
wait_until() {
    local n=$(($1 * 10)); shift
    while ! "$@"; do
        ((n-- > 0)) || return 1
        sleep 0.1
    done
}
no_server() { [[ -z $(server_pids "$1") ]]; }

# The one-node Slurm cluster stage.sh starts as root (fixtures/slurm.bash);
# need_slurm skips (or fails in CI) when it is not running.
ch_slurm_conf=$(dirname "$ch_img")/slurm/slurm.conf
need_slurm() {
    [[ -r $ch_slurm_conf ]] || skip_env "no test Slurm cluster (stage.sh starts one as root)"
    command -v srun >/dev/null || skip_env "srun not installed (Debian: slurm-client)"
    export SLURM_CONF=$ch_slurm_conf
}

# assert_quiet: no line of the last `run` is a warning or a PMIx error
# (Open MPI and PMIx print those and still exit 0).
assert_quiet() {
    local bad
    bad=$(grep -iE 'warn|error|not found|denied' <<<"$output" || true)
    if [[ -n $bad ]]; then
        printf 'unexpected warnings or errors:\n%s\nfull output:\n%s\n' "$bad" "$output" >&2
        return 1
    fi
}

# need_mpi_image: skip unless stage.sh built the MPI image (both forms).
need_mpi_image() {
    [[ -d $ch_img/mpi && -f $ch_img/mpi.sqfs ]] \
        || skip_env "no MPI image (fixtures/mpi-image.sh needs mmdebstrap and Debian's mirror)"
}

# shellcheck shell=bash
# stage.sh: sourced by test/check.sh. Puts what the integration tests need
# where the unprivileged test user can read it (the build tree may not be),
# builds the shared fixtures once per run, and lets that user use /dev/fuse
# for the run (restored at exit).
# Sets: CH_TEST_ROOT (the staging area), ch_test_user.

ch_test_user=${CH_TEST_USER:-chtest}
CH_TEST_ROOT=${CH_TEST_ROOT:-/var/tmp/ch-test.$(id -u)}
export CH_TEST_ROOT

ch_fuse_mode_saved=
ch_registry=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/integration/fixtures/registry.sh

# stage_exit: undo what stage_all set up for the run, however it ends.
stage_exit() {
    stop_vnodes
    stop_slurm
    stop_registries
    unmount_small_tmpfs
    restore_fuse
}

# A 20 MiB tmpfs owned by the test user, for ch-image-faults.bats's full-disk
# test in the unprivileged pass (the root pass mounts its own).
ch_small_tmpfs() { echo "$CH_TEST_ROOT/tmpfs-20m"; }
mount_small_tmpfs() {
    [[ $(id -u) -eq 0 ]] || return 0
    local m
    m=$(ch_small_tmpfs)
    mkdir -p "$m"
    mount -t tmpfs -o "size=20m,mode=0700,uid=$(id -u "$ch_test_user"),gid=$(id -g "$ch_test_user")" \
        tmpfs "$m" || echo "can't mount a tmpfs at $m: the full-disk test will skip as $ch_test_user"
}
unmount_small_tmpfs() {
    local m
    m=$(ch_small_tmpfs)
    if mountpoint -q "$m" 2>/dev/null; then
        umount "$m" || umount -l "$m"
    fi
}

# The test registries (fixtures/registry.sh) run from the end of stage_all
# until the run exits.
stop_registries() {
    if [[ -e $CH_TEST_ROOT/registry/env ]]; then
        bash "$ch_registry" stop
    fi
}

restore_fuse() {
    if [[ -n $ch_fuse_mode_saved ]]; then
        chmod "$ch_fuse_mode_saved" /dev/fuse && echo "restored /dev/fuse to mode $ch_fuse_mode_saved"
        ch_fuse_mode_saved=
    fi
}

# The one-node Slurm cluster (fixtures/slurm.bash) the Slurm suites use, at
# $CH_TEST_ROOT/slurm: started by stage_all as root, stopped at exit.
ch_slurm_dir=
stop_slurm() {
    if [[ -n $ch_slurm_dir ]]; then
        slurm_stop "$ch_slurm_dir" && echo "stopped the test Slurm cluster"
        ch_slurm_dir=
    fi
}

start_slurm() { # start_slurm SCOPE: only as root, only if Slurm is installed
    [[ $(id -u) -eq 0 && $1 != quick ]] || return 0
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        echo "Slurm or munge not installed (test profile of install-deps.sh): Slurm tests will skip"
        return 0
    fi
    # shellcheck source=test/integration/fixtures/slurm.bash
    source test/integration/fixtures/slurm.bash
    ch_slurm_dir=$CH_TEST_ROOT/slurm
    trap stage_exit EXIT
    if slurm_setup "$ch_slurm_dir" && slurm_start "$ch_slurm_dir"; then
        echo "started a one-node Slurm cluster: SLURM_CONF=$ch_slurm_dir/slurm.conf"
        return 0
    fi
    # Not fatal for the other suites: without slurm.conf the Slurm tests
    # skip (and fail with CH_TEST_MUST_WORK=1).
    echo "could not start the test Slurm cluster (logs in $ch_slurm_dir/log); Slurm tests will skip" >&2
    slurm_stop "$ch_slurm_dir"
    mv "$ch_slurm_dir/slurm.conf" "$ch_slurm_dir/slurm.conf.failed"
    ch_slurm_dir=
}

# The virtual cluster of ch-run-multinode.bats (fixtures/vnodes.sh: two
# Slurm nodes in namespaces, chtools installed on their shared directory), at
# $CH_TEST_ROOT/vnodes: started by stage_all as root, stopped at exit. If it
# can't start, the multi-node tests skip (or fail with CH_TEST_MUST_WORK=1).
ch_vnodes=
stop_vnodes() {
    if [[ -n $ch_vnodes ]]; then
        "$ch_vnodes" stop && echo "stopped the virtual cluster"
        ch_vnodes=
    fi
}
start_vnodes() { # start_vnodes SCOPE TOP
    [[ $(id -u) -eq 0 && $1 != quick ]] || return 0
    command -v slurmd >/dev/null || return 0
    ch_vnodes=$2/test/integration/fixtures/vnodes.sh
    trap stage_exit EXIT
    if ! { "$ch_vnodes" start 2 && "$ch_vnodes" stage "$2" "$CH_TEST_ROOT/img"; }; then
        echo "the virtual cluster did not start: multi-node tests will skip"
        stop_vnodes
    fi
}

stage_all() { # stage_all SCOPE
    local scope=$1 top
    top=$(pwd)
    trap stage_exit EXIT
    if [[ $(id -u) -eq 0 ]]; then
        if ! id "$ch_test_user" >/dev/null 2>&1; then
            useradd --create-home --shell /bin/bash "$ch_test_user" || return 1
            echo "created test user $ch_test_user"
        fi
        # Debian's udev makes /dev/fuse 0666; some machines (this one) leave it
        # 0600, which would make every SquashFS test skip as the user.
        local mode
        mode=$(stat -c %a /dev/fuse 2>/dev/null)
        if [[ -n $mode && $mode != 666 ]]; then
            ch_fuse_mode_saved=$mode
            chmod 0666 /dev/fuse && echo "set /dev/fuse to mode 0666 for this run (was $mode)"
        fi
    else
        ch_test_user=$(id -un)
    fi
    # A run cut short may have left the last run's registries up.
    stop_registries
    unmount_small_tmpfs
    stop_slurm
    if [[ $(id -u) -eq 0 && -e $CH_TEST_ROOT/slurm/slurm.conf ]]; then
        # A run that was killed may have left its cluster running.
        # shellcheck source=test/integration/fixtures/slurm.bash
        source test/integration/fixtures/slurm.bash
        slurm_stop "$CH_TEST_ROOT/slurm"
    fi
    test/integration/fixtures/vnodes.sh clean   # a killed run's, by name
    rm -rf "$CH_TEST_ROOT"
    mkdir -p "$CH_TEST_ROOT"/{bin,img,suites} || return 1
    chmod 0755 "$CH_TEST_ROOT"
    cp -p bin/ch-* "$CH_TEST_ROOT/bin/" 2>/dev/null
    rm -f "$CH_TEST_ROOT"/bin/*.cc "$CH_TEST_ROOT"/bin/*.hh
    if [[ -d build-san/bin ]]; then
        mkdir -p "$CH_TEST_ROOT/bin-san"
        cp -p build-san/bin/ch-* "$CH_TEST_ROOT/bin-san/"
    fi
    cp -a build/img/busybox "$CH_TEST_ROOT/img/busybox" || return 1
    rm -f "$CH_TEST_ROOT/img/busybox/.built"
    cp -a test/integration/. "$CH_TEST_ROOT/suites/"
    cp -a examples "$CH_TEST_ROOT/examples"   # examples.bats runs them as users would
    # A directory the test user can't search, for the unreadable-source tests.
    if [[ $(id -u) -eq 0 ]]; then
        mkdir -p "$CH_TEST_ROOT/private/inner"
        chmod 0700 "$CH_TEST_ROOT/private"
    fi
    # Shared fixtures, built once per run (each script is idempotent).
    local f
    for f in test/integration/fixtures/*.sh; do
        [[ -e $f ]] || continue
        echo "fixture: $f"
        CH_TEST_BIN=$CH_TEST_ROOT/bin CH_TEST_IMG=$CH_TEST_ROOT/img CH_TEST_SCOPE=$scope \
            bash "$f" || { echo "fixture failed: $f" >&2; return 1; }
    done
    chmod -R a+rX "$CH_TEST_ROOT"
    [[ -d $CH_TEST_ROOT/private ]] && chmod 0700 "$CH_TEST_ROOT/private"
    mount_small_tmpfs
    if [[ -e $CH_TEST_ROOT/registry/env ]]; then
        bash "$ch_registry" start || return 1
    fi
    start_slurm "$scope"
    start_vnodes "$scope" "$top"
    cd "$top" || return 1
}

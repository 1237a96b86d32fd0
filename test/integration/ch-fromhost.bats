#!/usr/bin/env bats
# ch-fromhost.bats: host files copied into directory images, libraries to
# the directory the image's own ld.so.conf names, then the image's ldconfig
# through ch-run -w; all or nothing; --nvidia. Images and libraries are
# built from this host's files (fixtures/inject.bash).

load common
load fixtures/inject

ch-fromhost() { "$ch_bin/ch-fromhost" "$@"; }

setup_file() {
    local d=$BATS_FILE_TMPDIR
    export USER=${USER:-$(id -un)}
    inject_chinj "$d/host"
    inject_glibc_image "$d/img" "$d/host/bin/chinj-prog"
}

setup() {
    d=$BATS_FILE_TMPDIR
    img=$BATS_TEST_TMPDIR/img
    cp -a "$d/img" "$img"
}

# Every path in the image with its type, mode and size, and every file's
# checksum: what "nothing changed" means.
image_state() {
    (cd "$1" && find . -print0 | sort -z | xargs -0 stat -c '%n %F %a %s' \
        && find . -type f -print0 | sort -z | xargs -0 md5sum)
}

@test "fromhost: --help, --version, usage errors" {
    run ch-fromhost --help
    assert_status 0
    assert_output_has "--lib-path"
    run ch-fromhost --version
    assert_status 0
    run ch-fromhost "$img"
    assert_status 64
    assert_output_has "no files to inject (give --path, --cmd, --file or --nvidia)"
    run ch-fromhost -p /etc/hostname
    assert_status 64
    assert_output_has "no IMAGE given"
}

@test "fromhost: --lib-path is the first ld.so.conf directory the image has" {
    run ch-fromhost --lib-path "$img"
    assert_status 0
    # /usr/local/lib (libc.conf, first) is missing from this image.
    assert_line_is 0 "/lib/$(gcc -print-multiarch)"
    mkdir -p "$img/usr/local/lib"
    run ch-fromhost --lib-path "$img"
    assert_line_is 0 "/usr/local/lib"
}

@test "fromhost: a library by --path, then ldconfig: the program runs" {
    run -127 ch-run "$img" -- "$d/host/bin/chinj-prog"
    run ch-fromhost -v --path "$d/host/lib/libchinj.so.1" "$img"
    assert_status 0
    assert_output_has "$d/host/lib/libchinj.so.1 -> /lib/$(gcc -print-multiarch)/libchinj.so.1"
    assert_output_has "copied 1 files into $img"
    assert_output_has "-- /sbin/ldconfig"
    [[ -f $img/usr/lib/$(gcc -print-multiarch)/libchinj.so.1 && ! -L $img/usr/lib/$(gcc -print-multiarch)/libchinj.so.1 ]]
    run ch-run "$img" -- /sbin/ldconfig -p
    assert_output_has "libchinj.so.1 (libc6,x86-64) => /lib/$(gcc -print-multiarch)/libchinj.so.1"
    run ch-run "$img" -- "$d/host/bin/chinj-prog"
    assert_status 0
    assert_output_has "chinj answer 4242"
}

@test "fromhost: --cmd, --file and --dest; other files keep their path" {
    printf '# a comment\n\n%s\n' "$d/host/include/chinj.h" > "$BATS_TEST_TMPDIR/list"
    run ch-fromhost --file "$BATS_TEST_TMPDIR/list" \
                    --dest /opt/chinj --cmd "echo $d/host/lib/libchinj.so.1" "$img"
    assert_status 0
    [[ -f $img$d/host/include/chinj.h ]]
    [[ -f $img/opt/chinj/libchinj.so.1 ]]
    run ch-fromhost --cmd "echo $d/host/include/chinj.h; false" "$img"
    assert_status 31
    assert_output_has "can't inject the files of --cmd"
    assert_output_has "exited with status 1"
    run ch-fromhost --no-ldconfig -p "$d/host/lib/libchinj.so.1" "$img"
    assert_status 0
    assert_output_lacks "ldconfig"
}

@test "fromhost: a copy that fails partway leaves the image as it was" {
    local before
    before=$(image_state "$img")
    mkdir -p "$BATS_TEST_TMPDIR/a-directory"
    run ch-fromhost -p "$d/host/lib/libchinj.so.1" -p /etc/hostname -d /new/deep/dir \
                    -p "$d/host/include/chinj.h" -p "$BATS_TEST_TMPDIR/a-directory" "$img"
    assert_status 31
    assert_output_has "can't copy $BATS_TEST_TMPDIR/a-directory to /new/deep/dir/a-directory in image $img: not a regular file"
    [[ $(image_state "$img") == "$before" ]]
    run ch-fromhost -p /nonexistent/libx.so.1 "$img"
    assert_status 31
    assert_output_has "can't copy /nonexistent/libx.so.1 to"
    assert_output_has "No such file or directory"
    mkdir -p "$BATS_TEST_TMPDIR/other"
    echo other > "$BATS_TEST_TMPDIR/other/hostname"
    run ch-fromhost -d /same -p /etc/hostname -p "$BATS_TEST_TMPDIR/other/hostname" "$img"
    assert_status 31
    assert_output_has "can't inject both /etc/hostname and $BATS_TEST_TMPDIR/other/hostname: both would be /same/hostname in the image"
    [[ $(image_state "$img") == "$before" ]]
}

@test "fromhost: the image's symlinks don't lead out of it" {
    local outside=$BATS_TEST_TMPDIR/outside
    mkdir -p "$outside"
    # ld.so.conf lists a directory that is a symlink out of the image: it
    # resolves inside the image, where it does not exist, so it is skipped.
    mkdir -p "$img/usr/local"
    ln -s "$outside" "$img/usr/local/lib"
    run ch-fromhost --lib-path "$img"
    assert_line_is 0 "/lib/$(gcc -print-multiarch)"
    # --dest through that symlink: refused, and nothing lands outside.
    run ch-fromhost --no-ldconfig -d /usr/local/lib -p "$d/host/lib/libchinj.so.1" "$img"
    assert_status 31
    assert_output_has "can't create /usr/local/lib in image $img"
    assert_empty_dir "$outside"
    # An ld.so.conf that is a symlink to a host file is read inside the image.
    printf '%s\n' "$outside" > "$BATS_TEST_TMPDIR/host.conf"
    rm "$img/etc/ld.so.conf"
    ln -s "$BATS_TEST_TMPDIR/host.conf" "$img/etc/ld.so.conf"
    run ch-fromhost --lib-path "$img"
    assert_line_is 0 /usr/lib64
}

@test "fromhost: SquashFS images are refused" {
    "$ch_bin/ch-convert" -q "$img" "$BATS_TEST_TMPDIR/img.sqfs"
    run ch-fromhost -p /etc/hostname "$BATS_TEST_TMPDIR/img.sqfs"
    assert_status 31
    assert_output_has "a SquashFS image is read-only (ch-run --inject binds host files at start)"
}

@test "fromhost: --nvidia on a host without the NVIDIA driver: exit 1, image unchanged" {
    if [[ -e /dev/nvidiactl ]] || command -v nvidia-smi >/dev/null; then
        skip "this host has an NVIDIA driver"
    fi
    local before
    before=$(image_state "$img")
    run ch-fromhost --nvidia "$img"
    assert_status 1
    assert_output_has "--nvidia: no NVIDIA driver libraries on this host"
    assert_output_has "ldconfig -p lists none of the driver's libraries"
    [[ $(image_state "$img") == "$before" ]]
}

@test "fromhost: --nvidia on a GPU host: nvidia-smi works in the container" {
    [[ -e /dev/nvidiactl ]] && command -v nvidia-smi >/dev/null \
        || skip "no NVIDIA GPU on this host (no /dev/nvidiactl or no nvidia-smi)"
    run ch-fromhost --nvidia "$img"
    assert_status 0
    run ch-run "$img" -- nvidia-smi -L
    assert_status 0
    assert_output_has "GPU 0"
}

# fromhost_mpi_setup: an image with mpi_check and only the C library, with
# the host's Open MPI copied in by ch-fromhost. Sets mpi, mimg.
fromhost_mpi_setup() {
    command -v mpicc >/dev/null && command -v mpirun >/dev/null \
        || skip_env "Open MPI (openmpi-bin, libopenmpi-dev) not installed"
    mpi=$BATS_TEST_TMPDIR/mpi
    mimg=$BATS_TEST_TMPDIR/mpiimg
    inject_mpi_check "$mpi"
    inject_glibc_image "$mimg" "$mpi/mpi_check"
    # Libraries to the image's library directory; the files of the plugin,
    # help and configuration directories to their own paths (plugins, named
    # like libraries, by --dest, which holds for the options after it: so
    # the libraries come first).
    local libs=() dirs=() f sub
    while read -r f; do
        if [[ -d $f ]]; then
            while read -r sub; do
                dirs+=(-d "$sub" -c "find $sub -maxdepth 1 -type f")
            done < <(find "$f" -type d)
        else
            libs+=(-p "$f")
        fi
    done < <(inject_mpi_files "$mpi/mpi_check" "$mimg")
    "$ch_bin/ch-fromhost" "${libs[@]}" "${dirs[@]}" "$mimg"
    # Separate user namespaces rule out CMA single copy; say so rather than
    # let Open MPI warn.
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
}

@test "fromhost: the host's Open MPI copied into an image without it, run under mpirun" {
    fromhost_mpi_setup
    local root_ok=()
    as_root && root_ok=(--allow-run-as-root)
    run timeout 120 mpirun "${root_ok[@]}" --oversubscribe -np 2 \
        "$ch_bin/ch-run" "$mimg" -- "$mpi/mpi_check"
    assert_status 0
    assert_output_has "mpi_check: 2 ranks, all ok"
}

# Through Slurm: the one-node cluster that stage.sh starts as root
# (fixtures/slurm.bash); need_slurm skips where there is none.
@test "fromhost: the host's Open MPI copied in, through Slurm (srun --mpi=pmix)" {
    need_slurm
    fromhost_mpi_setup
    run timeout 300 srun --quiet --mpi=pmix -n 2 \
        "$ch_bin/ch-run" "$mimg" -- "$mpi/mpi_check"
    assert_status 0
    assert_output_has "mpi_check: 2 ranks, all ok"
}

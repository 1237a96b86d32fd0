#!/usr/bin/env bats
# ch-run-inject.bats: ch-run --inject, the site's sets of host files bound
# into the container at start, libraries found through a generated
# ld.so.cache; into directory images left read-only and SquashFS images,
# with nothing written to either. Images and libraries are built from this
# host's files (fixtures/inject.bash).

load common
load fixtures/inject

setup_file() {
    local d=$BATS_FILE_TMPDIR
    export USER=${USER:-$(id -un)}
    inject_chinj "$d/host"
    # gcov (gcc's, as the test libraries are built with it) needs only the
    # C library and libz.so.1, which the image lacks: the library-by-name test.
    inject_glibc_image "$d/img" "$d/host/bin/chinj-prog" /usr/bin/gcov
    "$ch_bin/ch-convert" -q "$d/img" "$d/img.sqfs"
    cat > "$d/site.yaml" <<EOY
run:
  inject:
    chinj:
      - {source: $d/host/lib/libchinj.so.1, target: /opt/chinj/lib/libchinj.so.1}
      - $d/host/include/chinj.h
    other:
      - /etc/hostname
EOY
    cat > "$d/bydir.yaml" <<EOY
run:
  inject:
    bydir:
      - $d/host/lib/libchinj.so.1
EOY
}

setup() {
    d=$BATS_FILE_TMPDIR
    export CH_CONFIG_SITE=$d/site.yaml CH_CONFIG_USER=/nonexistent
}

# A listing of the image (names, modes, sizes, contents' checksums): the
# image must be the same after each run.
image_state() {
    (cd "$1" && find . -path ./proc -prune -o -path ./sys -prune -o -path ./dev -prune -o -print0 \
        | sort -z | xargs -0 stat -c '%n %f %s' && find . -type f -print0 | sort -z | xargs -0 md5sum)
}

@test "inject: the image lacks the library until it is injected" {
    run -127 ch-run "$d/img" -- "$d/host/bin/chinj-prog"
    assert_output_has "libchinj.so.1: cannot open shared object file"
}

@test "inject: a directory image, left read-only and unchanged" {
    local before
    before=$(image_state "$d/img")
    run ch-run --inject=chinj "$d/img" -- "$d/host/bin/chinj-prog"
    assert_status 0
    assert_output_has "chinj answer 4242 (header says 4242)"
    # Other files go to their own path.
    run ch-run --inject=chinj "$d/img" -- /bin/sh -c "while read -r l; do echo \"\$l\"; done < $d/host/include/chinj.h"
    assert_status 0
    assert_output_has "#define CHINJ_MAGIC 4242"
    [[ ! -e $d/img/opt ]]
    [[ $(image_state "$d/img") == "$before" ]]
}

@test "inject: a SquashFS image" {
    [[ -r /dev/fuse && -w /dev/fuse ]] || skip_env "/dev/fuse not usable by $(id -un)"
    run ch-run --inject=chinj "$d/img.sqfs" -- "$d/host/bin/chinj-prog"
    assert_status 0
    assert_output_has "chinj answer 4242"
}

@test "inject: the generated cache holds the image's libraries and the injected ones" {
    run ch-run --inject "$d/img" -- /sbin/ldconfig -p
    assert_status 0
    assert_output_has "libchinj.so.1 (libc6,x86-64) => /opt/chinj/lib/libchinj.so.1"
    assert_output_has "libc.so.6 (libc6,x86-64) => /"
    # Every set when none is named: /etc/hostname comes from "other".
    run ch-run --inject "$d/img" -- /bin/sh -c 'read -r h < /etc/hostname; echo "host $h"'
    assert_status 0
    assert_output_has "host $(cat /etc/hostname)"
}

@test "inject: libraries without a target are bound by directory under /ch/inject" {
    CH_CONFIG_SITE=$d/bydir.yaml run ch-run --inject "$d/img" -- /sbin/ldconfig -p
    assert_status 0
    # The file the symlink names, in its directory's one mount.
    assert_output_has "libchinj.so.1 (libc6,x86-64) => /ch/inject/0/libchinj.so.1.0.0"
    CH_CONFIG_SITE=$d/bydir.yaml run ch-run --inject "$d/img.sqfs" -- "$d/host/bin/chinj-prog"
    assert_status 0
    assert_output_has "chinj answer 4242"
    [[ ! -e $d/img/ch/inject ]]
}

@test "inject: libraries by name, where the host's ld.so.cache says they are" {
    cat > "$BATS_TEST_TMPDIR/byname.yaml" <<EOY
run:
  inject:
    byname:
      - libz.so.1
EOY
    run -127 ch-run "$d/img" -- /usr/bin/gcov --version
    assert_output_has "libz.so.1: cannot open shared object file"
    CH_CONFIG_SITE=$BATS_TEST_TMPDIR/byname.yaml run ch-run -v --inject "$d/img" -- /usr/bin/gcov --version
    assert_status 0
    assert_output_has "inject libz.so.1: /"
    assert_output_has "gcov (Debian"
    # Its directory is bound, and the soname's link found in it.
    CH_CONFIG_SITE=$BATS_TEST_TMPDIR/byname.yaml run ch-run --inject "$d/img" -- /sbin/ldconfig -p
    assert_status 0
    assert_output_has "libz.so.1 (libc6,x86-64) => /ch/inject/0/libz.so.1"
    [[ ! -e $d/img/ch/inject ]]
    # A name the host's cache lacks is an error at the entry.
    printf 'run:\n  inject:\n    x:\n      - libnope.so.9\n' > "$BATS_TEST_TMPDIR/nope.yaml"
    CH_CONFIG_SITE=$BATS_TEST_TMPDIR/nope.yaml run ch-run --inject "$d/img" -- /bin/sh -c :
    assert_status 31
    assert_output_has "no library libnope.so.9 in the host's /etc/ld.so.cache for this machine ($BATS_TEST_TMPDIR/nope.yaml:4:9)"
}

@test "inject: -v says where each set came from" {
    run ch-run -v --inject=chinj,chinj "$d/img" -- /bin/sh -c :
    assert_status 0
    assert_output_has "inject set chinj from $d/site.yaml:4:"
    assert_output_has "inject: 2 files, 1 libraries"
    assert_output_has "bind $d/host/lib/libchinj.so.1 -> /opt/chinj/lib/libchinj.so.1"
}

@test "inject: a damaged or escaping ld.so.cache in the image is not believed" {
    local img=$BATS_TEST_TMPDIR/img
    cp -a "$d/img" "$img"
    # Garbage: ignored with a warning; the injected library is still found.
    head -c 100 /dev/urandom > "$img/etc/ld.so.cache"
    run ch-run --inject=chinj "$img" -- "$d/host/bin/chinj-prog"
    assert_status 0
    assert_output_has "ignoring the image's /etc/ld.so.cache: not a glibc ld.so.cache"
    assert_output_has "chinj answer 4242"
    # A symlink out of the image resolves inside it: the host's cache is
    # never read (it would list the host's libraries). In the container the
    # link would reach the host's /tmp through the /tmp bind, so it is
    # removed from the writable layer, and the image keeps it.
    rm "$img/etc/ld.so.cache"
    cp /etc/ld.so.cache "$BATS_TEST_TMPDIR/host-cache"
    ln -s "$BATS_TEST_TMPDIR/host-cache" "$img/etc/ld.so.cache"
    run ch-run --inject=chinj "$img" -- /sbin/ldconfig -p
    assert_status 0
    assert_output_has "libchinj.so.1"
    assert_output_lacks "libz.so.1"
    [[ -L $img/etc/ld.so.cache ]]
}

@test "inject: an image whose /etc is a symlink gets the cache bound over its file" {
    # The overlay's upper layer can't hold etc/ld.so.cache in front of a
    # symlinked /etc, so the generated cache is bound where the link leads,
    # inside the image; the image keeps its link and its own cache.
    local img=$BATS_TEST_TMPDIR/img before
    cp -a "$d/img" "$img"
    mv "$img/etc" "$img/etc.real"
    ln -s etc.real "$img/etc"
    before=$(image_state "$img")
    run ch-run --inject=chinj "$img" -- "$d/host/bin/chinj-prog"
    assert_status 0
    assert_output_has "chinj answer 4242"
    run ch-run --inject=chinj "$img" -- /bin/sh -c '/sbin/ldconfig -p; while read -r l; do echo "$l"; done < /proc/self/mountinfo'
    assert_status 0
    assert_output_has "libchinj.so.1 (libc6,x86-64) => /opt/chinj/lib/libchinj.so.1"
    assert_output_has "libc.so.6 (libc6,x86-64) => /"
    assert_output_has " /etc.real/ld.so.cache "
    [[ -L $img/etc ]]
    [[ $(image_state "$img") == "$before" ]]
}

@test "inject: errors" {
    run ch-run --inject=nope "$d/img" -- /bin/sh -c :
    assert_status 64
    assert_output_has "--inject: no set nope in the configuration (it has: chinj, other)"
    run ch-run -w --inject=chinj "$d/img" -- /bin/sh -c :
    assert_status 64
    assert_output_has "--inject can't be used with --write"
    CH_CONFIG_SITE=/nonexistent run ch-run --inject "$d/img" -- /bin/sh -c :
    assert_status 64
    assert_output_has "--inject: the configuration names no sets"
    printf 'run:\n  inject:\n    bad:\n      - relative/path\n' > "$BATS_TEST_TMPDIR/bad.yaml"
    CH_CONFIG_SITE=$BATS_TEST_TMPDIR/bad.yaml run ch-run --inject "$d/img" -- /bin/sh -c :
    assert_status 31
    assert_output_has "bad.yaml:4:9: run.inject.bad entry must be an absolute path: relative/path"
    printf 'run:\n  inject:\n    gone:\n      - /nonexistent/libgone.so.1\n' > "$BATS_TEST_TMPDIR/gone.yaml"
    CH_CONFIG_SITE=$BATS_TEST_TMPDIR/gone.yaml run ch-run --inject "$d/img" -- /bin/sh -c :
    assert_status 31
    assert_output_has "can't bind /nonexistent/libgone.so.1 to /nonexistent/libgone.so.1: No such file or directory"
}

# inject_mpi_setup: an image with mpi_check and only the C library, and a
# site configuration whose set "mpi" is the host's Open MPI. Sets mpi, img.
inject_mpi_setup() {
    command -v mpicc >/dev/null && command -v mpirun >/dev/null \
        || skip_env "Open MPI (openmpi-bin, libopenmpi-dev) not installed"
    mpi=$BATS_TEST_TMPDIR/mpi
    img=$BATS_TEST_TMPDIR/mpiimg
    inject_mpi_check "$mpi"
    inject_glibc_image "$img" "$mpi/mpi_check"
    inject_mpi_files "$mpi/mpi_check" "$img" > "$mpi/files"
    { echo "run:"; echo "  inject:"; echo "    mpi:"; sed 's/^/      - /' "$mpi/files"; } > "$mpi/site.yaml"
    export CH_CONFIG_SITE=$mpi/site.yaml
    # Separate user namespaces rule out CMA single copy; say so rather than
    # let Open MPI warn.
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
}

@test "inject: the host's Open MPI into an image without it, run under the host's mpirun" {
    inject_mpi_setup
    run -127 ch-run "$img" -- "$mpi/mpi_check"
    assert_output_has "libmpi.so.40: cannot open shared object file"
    local root_ok=()
    as_root && root_ok=(--allow-run-as-root)
    run timeout 120 mpirun "${root_ok[@]}" --oversubscribe -np 2 \
        "$ch_bin/ch-run" --inject=mpi "$img" -- "$mpi/mpi_check"
    assert_status 0
    assert_output_has "mpi_check: 2 ranks, all ok"
}

# Through Slurm: the one-node cluster that stage.sh starts as root
# (fixtures/slurm.bash); need_slurm skips where there is none.
@test "inject: the host's Open MPI, through Slurm (srun --mpi=pmix)" {
    need_slurm
    inject_mpi_setup
    # The image must be readable where Slurm starts the ranks (as this user).
    run timeout 300 srun --quiet --mpi=pmix -n 2 \
        "$ch_bin/ch-run" --inject=mpi "$img" -- "$mpi/mpi_check"
    assert_status 0
    assert_output_has "mpi_check: 2 ranks, all ok"
}

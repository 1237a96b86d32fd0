# ch-convert-unpack.bats: Charliecloud's unpacking behaviours for tarballs
# (COMPAT.md, "Pull and convert" section 3): a tarbomb's wrapping directory
# is unwrapped, and what ch-run needs is created when the tarball lacks it
# (unpack_init). Tarballs are made here from the busybox fixture image.
load common

setup() {
    cd "$BATS_TEST_TMPDIR" || return 1
}

teardown() {
    chmod -R u+rwX "$BATS_TEST_TMPDIR" 2>/dev/null || true
}

# Everything unpack_init makes, as paths relative to the image root.
init_paths=(bin dev etc mnt proc sys tmp usr mnt/0 mnt/1 mnt/2 mnt/3 mnt/4 mnt/5 mnt/6 mnt/7
            mnt/8 mnt/9 ch etc/hosts etc/resolv.conf)

# bare_busybox DIR: the busybox image without what ch-run needs and
# unpack_init makes (but with /bin/sh, passwd and group).
bare_busybox() {
    cp -a "$ch_busybox" "$1"
    rm -rf "${1:?}"/{dev,proc,sys,tmp,mnt,ch} "${1:?}"/etc/{hosts,resolv.conf}
    [[ ! -e $1/dev && -x $1/bin/sh ]]
}

@test 'ch-convert: a tarball of one directory (tar czf img.tar.gz img/) unpacks as the image' {
    cp -a "$ch_busybox" img
    tar czf img.tar.gz img/
    run ch-convert -v img.tar.gz ./out
    assert_status 0
    assert_output_has "every entry is under 'img'/: unpacking its contents as the image"
    [[ -x out/bin/sh && ! -e out/img ]]
    run ch-run ./out -- /bin/sh -c 'echo unwrapped'
    assert_status 0
    assert_line_is 0 unwrapped
    # The same with ./img/ and into SquashFS.
    tar cf img2.tar ./img/
    run ch-convert img2.tar out.sqfs
    assert_status 0
    run ch-convert out.sqfs ./back
    assert_status 0
    [[ -x back/bin/sh && ! -e back/img ]]
}

@test 'ch-convert: a tarball whose one top-level directory is an image directory is not unwrapped' {
    mkdir -p in/usr/lib
    touch in/usr/lib/libx.so
    tar cf usr.tar -C in usr
    run ch-convert usr.tar ./out
    assert_status 0
    [[ -e out/usr/lib/libx.so && ! -e out/lib ]]
    # Two top-level names: nothing stripped either.
    mkdir -p in/a in/b
    touch in/a/f in/b/g
    tar cf ab.tar -C in a b
    run ch-convert ab.tar ./out2
    assert_status 0
    [[ -e out2/a/f && -e out2/b/g ]]
}

@test 'ch-convert: a tarball without /dev (and the rest ch-run needs) converts into an image ch-run runs' {
    bare_busybox img
    tar cf bare.tar -C img .
    run ch-convert -v bare.tar ./out
    assert_status 0
    assert_output_has "created 18 missing entries ch-run needs"
    local p
    for p in "${init_paths[@]}"; do
        [[ -e out/$p ]] || { echo "missing: $p" >&2; return 1; }
    done
    [[ -f out/etc/hosts && ! -s out/etc/hosts && -f out/etc/resolv.conf && -d out/mnt/9 ]]
    run ch-run ./out -- true
    assert_status 0
    # tar -> SquashFS -> ch-run
    run ch-convert bare.tar bare.sqfs
    assert_status 0
    run ch-run bare.sqfs -- /bin/sh -c 'test -d /mnt/0 && echo ok'
    assert_status 0
    assert_line_is 0 ok
    # and into storage
    run ch-convert bare.tar bare:1
    assert_status 0
    run ch-run bare:1 -- true
    assert_status 0
}

@test 'ch-convert: unpack_init does not follow symlinks and keeps what is there' {
    mkdir -p img/etc img/elsewhere
    ln -s /elsewhere img/tmp          # absolute: a symlink at a mount point stays one
    ln -s ../elsewhere/hosts img/etc/hosts  # dangling: lexists, so not touched
    printf 'nameserver 192.0.2.1\n' > img/etc/resolv.conf
    ln -s elsewhere img/mnt
    tar cf in.tar -C img .
    run ch-convert in.tar ./out
    assert_status 0
    [[ $(readlink out/tmp) == /elsewhere && $(readlink out/etc/hosts) == ../elsewhere/hosts ]]
    [[ ! -e out/elsewhere/hosts ]]
    [[ $(cat out/etc/resolv.conf) == 'nameserver 192.0.2.1' ]]
    # mnt is a symlink: mnt/0..9 land where it leads, inside the image
    [[ -L out/mnt && -d out/elsewhere/0 && -d out/elsewhere/9 ]]
}

@test 'ch-convert: unpack_init is only for tarballs unpacked into a directory or SquashFS' {
    bare_busybox img
    run ch-convert ./img out.sqfs
    assert_status 0
    run ch-convert out.sqfs ./back
    assert_status 0
    [[ ! -e back/dev && ! -e back/mnt ]]
    run ch-convert ./img out.tar.gz
    assert_status 0
    ! tar tzf out.tar.gz | grep -qE '^(\./)?(dev|mnt)/?$'
}

@test 'ch-convert: user.overlay.* extended attributes are dropped' {
    command -v getfattr > /dev/null || skip_env 'getfattr (package attr) not installed'
    python3 - <<'PY'
import io, tarfile
with tarfile.open("ovl.tar", "w", format=tarfile.PAX_FORMAT) as t:
    ti = tarfile.TarInfo("d")
    ti.type = tarfile.DIRTYPE
    ti.pax_headers = {"SCHILY.xattr.user.overlay.opaque": "y", "SCHILY.xattr.user.keep": "1"}
    t.addfile(ti)
    t.addfile(tarfile.TarInfo("f"))  # a second top-level name: not a tarbomb
PY
    mkdir probe
    setfattr -n user.probe -v 1 probe 2> /dev/null || skip_env "no user xattrs on $PWD"
    run ch-convert -v ovl.tar ./out
    assert_status 0
    assert_output_has 'dropped 1 extended attributes outside user.* or in user.overlay.*'
    [[ $(getfattr --only-values -n user.keep out/d) == 1 ]]
    run getfattr -d -m - out/d
    assert_output_lacks overlay
}

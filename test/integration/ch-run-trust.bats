# ch-run-trust.bats: what ch-run must not trust. It creates nothing outside
# the image (never through a default bind, an earlier -b, the home bind or
# another FUSE mount, even when an image symlink leads there); it uses no
# storage another user could have planted; it reads no /ch/environment that
# could exhaust memory or hang it. Runs as the test user and as root.
load common

setup() {
    scratch=$BATS_TEST_TMPDIR
    chmod 0755 "$scratch"
    # The container's /tmp is the host's $TMPDIR: a private one per test, so
    # "nothing was created on the host" can be checked there.
    hosttmp=$scratch/hosttmp
    mkdir -m 1777 "$hosttmp"
    export TMPDIR=$hosttmp
}

writable_image() {
    cp -a "$ch_busybox" "$scratch/img"
    chmod -R u+w "$scratch/img"
}

# no_such_user_name: a uid/user that isn't the invoker, for chown in the root pass.
other_user() { echo "${CH_TEST_USER:-chtest}"; }

@test 'ch-run-trust: -b under an earlier -b is refused, and nothing is created there' {
    writable_image
    mkdir -p "$scratch/src1" "$scratch/src2"
    for w in -w -W; do
        run ch-run "$w" -b "$scratch/src1:/mnt/0" -b "$scratch/src2:/mnt/0/sub" "$scratch/img" -- true
        assert_status 31
        assert_output_has "ch-run: can't bind $scratch/src2 to /mnt/0/sub: can't create /mnt/0/sub under the mount at /mnt/0 (ch-run creates nothing outside the image)"
        [[ ! -e $scratch/src1/sub ]]
    done
    # An existing destination is fine, wherever it is.
    mkdir "$scratch/src1/sub"
    echo two > "$scratch/src2/f"
    run ch-run -b "$scratch/src1:/mnt/0" -b "$scratch/src2:/mnt/0/sub" "$scratch/img" -- cat /mnt/0/sub/f
    assert_status 0
    assert_line_is 0 two
    [[ -z $(ls -A "$scratch/src1/sub") ]] # the bind was in the container only
}

@test 'ch-run-trust: an image symlink into /tmp does not lead a bind to create on the host' {
    writable_image
    mkdir -p "$scratch/src"
    ln -s /tmp/x "$scratch/img/mnt/link"
    # /tmp/x missing: it would be made in the host's /tmp.
    run ch-run -W -b "$scratch/src:/mnt/link/sub" "$scratch/img" -- true
    assert_status 31
    assert_output_has "ch-run: can't bind $scratch/src to /mnt/link/sub: can't create /tmp/x under the mount at /tmp (ch-run creates nothing outside the image)"
    assert_empty_dir "$hosttmp"
    # /tmp/x there: sub would be made in it.
    mkdir "$hosttmp/x"
    run ch-run -w -b "$scratch/src:/mnt/link/sub" "$scratch/img" -- true
    assert_status 31
    assert_output_has "can't create /tmp/x/sub under the mount at /tmp"
    assert_empty_dir "$hosttmp/x"
    # A symlink to a default bind other than /tmp (here /dev) is refused alike.
    ln -s /dev/newdir "$scratch/img/mnt/devlink"
    run ch-run -W -b "$scratch/src:/mnt/devlink" "$scratch/img" -- true
    assert_status 31
    assert_output_has "can't create /dev/newdir under the mount at /dev"
    [[ ! -e /dev/newdir ]]
    # A file destination too (-b of a file).
    echo f > "$scratch/file"
    run ch-run -W -b "$scratch/file:/mnt/link/newfile" "$scratch/img" -- true
    assert_status 31
    assert_output_has "can't create /tmp/x/newfile under the mount at /tmp"
    assert_empty_dir "$hosttmp/x"
}

@test 'ch-run-trust: --home through an image /home that leads into /tmp is refused' {
    writable_image
    mkdir -p "$scratch/home" "$hosttmp/h"
    rm -rf "$scratch/img/home"
    ln -s /tmp/h "$scratch/img/home"
    HOME=$scratch/home run ch-run --home "$scratch/img" -- true
    assert_status 31
    assert_output_has "can't bind $scratch/home to /home/$USER: can't create /tmp/h/$USER under the mount at /tmp (ch-run creates nothing outside the image)"
    assert_empty_dir "$hosttmp/h"
    # Into a missing /tmp/h: refused at /tmp.
    rmdir "$hosttmp/h"
    HOME=$scratch/home run ch-run --home -W "$scratch/img" -- true
    assert_status 31
    assert_output_has "can't create /tmp/h under the mount at /tmp"
    assert_empty_dir "$hosttmp"
}

@test 'ch-run-trust: nothing is created through the FUSE mount of another image' {
    command -v squashfuse >/dev/null || skip_env "squashfuse not installed"
    local sq=$ch_img/busybox.sqfs other=$scratch/other
    [[ -e $sq ]] || skip_env "SquashFS fixture missing"
    [[ -r /dev/fuse && -w /dev/fuse ]] || skip_env "/dev/fuse not usable by $(id -un)"
    writable_image
    mkdir -p "$other" "$scratch/src"
    squashfuse "$sq" "$other" || skip_env "squashfuse can't mount here"
    ln -s /mnt/0/usr "$scratch/img/mnt/into"
    run ch-run -W -b "$other:/mnt/0" -b "$scratch/src:/mnt/into/newdir" "$scratch/img" -- true
    local s=$status o=$output
    run ch-run -W -b "$other:/mnt/0" -b "$scratch/src:/mnt/0/bin" "$scratch/img" -- ls /mnt/0/bin
    fusermount3 -u "$other" 2>/dev/null || umount "$other"
    echo "$o"
    [[ $s -eq 31 ]]
    [[ $o == *"can't create /mnt/0/usr/newdir under the mount at /mnt/0 (ch-run creates nothing outside the image)"* ]]
    # Onto an existing directory in it: fine.
    assert_status 0
}

@test 'ch-run-trust: a destination that only passes through a mount, then back, is created in the image' {
    writable_image
    mkdir -p "$scratch/src"
    run ch-run -W -b "$scratch/src:/tmp/../created" "$scratch/img" -- sh -c 'test -d /created && echo yes'
    assert_status 0
    assert_line_is 0 yes
    assert_empty_dir "$hosttmp"
}

@test 'ch-run-trust: storage planted by root is refused for the user' {
    only_user
    local planted=${ch_img%/img}   # owned by root, holds img/busybox
    [[ $(stat -c %u "$planted") -eq 0 && -d $planted/img/busybox ]] || skip_env "no root-owned staging area"
    run ch-run -s "$planted" busybox -- true
    assert_status 31
    assert_output_has "ch-run: can't use storage directory $planted: it is owned by root (uid 0), not by you (uid $(id -u)), so others could put what you run there (have its owner remove it"
}

@test 'ch-run-trust: storage planted by the test user is refused for root' {
    only_root
    local u
    u=$(other_user)
    mkdir -p "$scratch/st/img"
    cp -a "$ch_busybox" "$scratch/st/img/x"
    chown -R "$u" "$scratch/st"
    run ch-run -s "$scratch/st" x -- true
    assert_status 31
    assert_output_has "ch-run: can't use storage directory $scratch/st: it is owned by $u (uid $(id -u "$u")), not by you (uid 0)"
    # Only img/ planted, in storage of root's own: refused too.
    chown root "$scratch/st"
    run ch-run -s "$scratch/st" x -- true
    assert_status 31
    assert_output_has "can't use storage directory $scratch/st/img: it is owned by $u"
}

@test 'ch-run-trust: group- or world-writable storage and symlinked storage are refused' {
    mkdir -p "$scratch/st/img"
    cp -a "$ch_busybox" "$scratch/st/img/x"
    run ch-run -s "$scratch/st" x -- echo ok
    assert_status 0
    assert_line_is 0 ok
    chmod 0770 "$scratch/st"
    run ch-run -s "$scratch/st" x -- true
    assert_status 31
    assert_output_has "can't use storage directory $scratch/st: it is writable by its group, so others could put what you run there (fix: chmod go-w $scratch/st)"
    chmod 0755 "$scratch/st"
    chmod 0777 "$scratch/st/img"
    run ch-run -s "$scratch/st" x -- true
    assert_status 31
    assert_output_has "can't use storage directory $scratch/st/img: it is writable by others"
    chmod 0755 "$scratch/st/img"
    ln -s st "$scratch/stlink"
    run ch-run -s "$scratch/stlink" x -- true
    assert_status 31
    assert_output_has "can't use storage directory $scratch/stlink: it is a symlink"
    CH_IMAGE_STORAGE=$scratch/stlink/ run ch-run x -- true
    assert_status 31
    assert_output_has "can't use storage directory $scratch/stlink: it is a symlink"
    mv "$scratch/st/img" "$scratch/realimg"
    ln -s ../realimg "$scratch/st/img"
    run ch-run -s "$scratch/st" x -- true
    assert_status 31
    assert_output_has "can't use storage directory $scratch/st/img: it is a symlink"
}

@test 'ch-run-trust: new storage is made 0700; a symlinked or foreign mnt/ is refused (SquashFS)' {
    local sq=$ch_img/busybox.sqfs
    [[ -e $sq ]] || skip_env "SquashFS fixture missing"
    [[ -r /dev/fuse && -w /dev/fuse ]] || skip_env "/dev/fuse not usable by $(id -un)"
    (umask 0; run ch-run -s "$scratch/new" "$sq" -- true; echo "$output"; [[ $status -eq 0 ]])
    [[ $(stat -c %a "$scratch/new") == 700 && $(stat -c %a "$scratch/new/mnt") == 700 ]]
    mkdir "$scratch/elsewhere"
    rmdir "$scratch/new/mnt"
    ln -s ../elsewhere "$scratch/new/mnt"
    run ch-run -s "$scratch/new" "$sq" -- true
    assert_status 84
    assert_output_has "ch-run: can't mount $sq: can't use storage directory $scratch/new/mnt: it is a symlink"
    rm "$scratch/new/mnt"
    mkdir -m 0775 "$scratch/new/mnt"
    run ch-run -s "$scratch/new" "$sq" -- true
    assert_status 84
    assert_output_has "can't use storage directory $scratch/new/mnt: it is writable by its group"
    if as_root; then
        chmod 0700 "$scratch/new/mnt"
        chown "$(other_user)" "$scratch/new/mnt"
        run ch-run -s "$scratch/new" "$sq" -- true
        assert_status 84
        assert_output_has "can't use storage directory $scratch/new/mnt: it is owned by $(other_user)"
    fi
}

@test 'ch-run-trust: ch-run . and ch-run .. are directories, never storage' {
    mkdir -p "$CH_IMAGE_STORAGE/img"
    cd "$ch_busybox"
    run ch-run -v . -- echo dot
    assert_status 0
    [[ ${lines[-1]} == dot ]]
    assert_output_has "image: $ch_busybox (directory)"
    cd "$ch_busybox/bin"
    run ch-run -v .. -- echo dotdot
    assert_status 0
    assert_output_has "image: $ch_busybox (directory)"
    # Such names are no names in storage either.
    run ch-run 'a/../..' -- true
    assert_status 31
    assert_output_lacks "$CH_IMAGE_STORAGE"
}

@test 'ch-run-trust: --set-env without argument reads only a regular /ch/environment up to 1 MiB' {
    writable_image
    mkdir -p "$scratch/img/ch"
    echo 'FROMIMG=yes' > "$scratch/img/ch/environment"
    run ch-run --set-env "$scratch/img" -- sh -c 'echo $FROMIMG'
    assert_status 0
    assert_line_is 0 yes
    # A symlink to /dev/zero would fill memory.
    ln -sf /dev/zero "$scratch/img/ch/environment"
    run timeout 20 "$ch_bin/ch-run" --set-env "$scratch/img" -- true
    assert_status 31
    assert_output_has "ch-run: can't read /ch/environment: not a regular file"
    # A FIFO would hang.
    rm "$scratch/img/ch/environment"
    mkfifo "$scratch/img/ch/environment"
    run timeout 20 "$ch_bin/ch-run" --set-env "$scratch/img" -- true
    assert_status 31
    assert_output_has "ch-run: can't read /ch/environment: not a regular file"
    # Too big.
    rm "$scratch/img/ch/environment"
    head -c 1048577 /dev/zero | tr '\0' A > "$scratch/img/ch/environment"
    run ch-run --set-env "$scratch/img" -- true
    assert_status 31
    assert_output_has "ch-run: can't read /ch/environment: 1048577 bytes, more than the 1048576 allowed"
    # Exactly 1 MiB is fine (blank lines are skipped).
    { echo SMALL=ok; head -c $((1048576 - 9)) /dev/zero | tr '\0' '\n'; } > "$scratch/img/ch/environment"
    [[ $(stat -c %s "$scratch/img/ch/environment") -eq 1048576 ]]
    run ch-run --set-env "$scratch/img" -- sh -c 'echo $SMALL'
    assert_status 0
    assert_line_is 0 ok
}

@test 'ch-run-trust: an unusable optional default bind destination is skipped, with a note at -v' {
    [[ -e /etc/hosts && -e /etc/resolv.conf ]] || skip_env "host lacks /etc/hosts or /etc/resolv.conf"
    writable_image
    rm -f "$scratch/img/etc/hosts" "$scratch/img/etc/resolv.conf"
    ln -s hosts "$scratch/img/etc/hosts"            # ELOOP
    mkdir "$scratch/img/etc/resolv.conf"            # a file onto a directory: ENOTDIR
    run ch-run "$scratch/img" -- echo ran
    assert_status 0
    assert_line_is 0 ran
    run ch-run -v "$scratch/img" -- echo ran
    assert_status 0
    assert_output_has "skipping optional /etc/hosts: destination in the image: Too many levels of symbolic links"
    assert_output_has "skipping optional /etc/resolv.conf: destination in the image: Not a directory"
    # A required one is still fatal.
    rm -rf "$scratch/img/proc"
    ln -s proc "$scratch/img/proc"
    run ch-run "$scratch/img" -- true
    assert_status 31
    assert_output_has "can't bind /proc to /proc"
}

@test 'ch-run-trust: -W with size zero is an error (tmpfs would take no limit)' {
    for w in -W0 -W0% --write-fake=0 --write-fake=00k; do
        run ch-run "$w" "$ch_busybox" -- true
        assert_status 64
        assert_output_has "bad --write-fake size: ${w#*[W=]} (must be more than zero"
    done
}

@test 'ch-run-trust: -w --home on a SquashFS image without /home/$USER is refused up front' {
    local sq=$ch_img/busybox.sqfs
    [[ -e $sq ]] || skip_env "SquashFS fixture missing"
    mkdir -p "$scratch/home"
    HOME=$scratch/home run ch-run -w --home "$sq" -- true
    assert_status 31
    assert_output_has "ch-run: can't use --home with -w on SquashFS image $sq: /home/$USER must be created and the image is read-only"
    [[ ! -e $CH_IMAGE_STORAGE ]] # refused before anything was made
}

@test 'ch-run-trust: ch-convert makes storage 0700 and reads no image from untrusted storage' {
    # In a directory of our own, not /tmp, where anyone can leave a file x.
    cd "$scratch"
    (umask 0; ch-convert -s "$scratch/st" "$ch_busybox" x)
    [[ $(stat -c %a "$scratch/st") == 700 && $(stat -c %a "$scratch/st/img") == 700 ]]
    run ch-run -s "$scratch/st" x -- echo ok
    assert_status 0
    assert_line_is 0 ok
    chmod 0775 "$scratch/st/img"
    run ch-convert -s "$scratch/st" x "$scratch/out"
    assert_status 31
    assert_output_has "can't use storage directory $scratch/st/img: it is writable by its group"
    [[ ! -e $scratch/out ]]
    run ch-convert -s "$scratch/st" "$ch_busybox" y
    assert_status 31
    assert_output_has "can't use storage directory $scratch/st/img: it is writable by its group"
    [[ ! -e $scratch/st/img/y ]]
}

#!/usr/bin/env bats
# ch-run-squash.bats: ch-run with SquashFS images, mounted with FUSE inside
# the container's mount namespace and served by a multithreaded server
# process (ch-squashfuse). Fixtures: test/integration/fixtures/squash-images.sh.

load common

setup() {
    ch_sq=$ch_img/busybox.sqfs
    ch_data=$ch_img/data.sqfs
    [[ -e $ch_sq && -e $ch_data ]] || skip_env "SquashFS fixtures missing (mksquashfs?)"
    [[ -r /dev/fuse && -w /dev/fuse ]] || skip_env "/dev/fuse not usable by $(id -un)"
    # A mount point of this test's own: it also marks this test's servers,
    # whose command line (ch-run's) names it.
    mnt=$BATS_TEST_TMPDIR/mnt
    mkdir -p "$mnt"
    out=$BATS_TEST_TMPDIR/out
    mkdir -p "$out"
    chmod 0777 "$out"
}

has_server() { [[ -n $(server_pids "$1") ]]; }

# sb_u64 FILE OFFSET: a little-endian 64-bit superblock field.
sb_u64() { od -An -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }

# A listing of the image that a directory image and its SquashFS twin must
# agree on: type, mode, link count, size (not for directories, which each
# file system sizes its own way), symlink targets and file contents. Not
# /dev, /proc, /sys, /tmp: host binds.
listing='cd / && top=$(ls -A | grep -vxE "dev|proc|sys|tmp")
         find $top ! -type d -exec stat -c "%n %A %h %s" {} + | sort
         find $top -type d -exec stat -c "%n %A %h" {} + | sort
         find $top -type l -exec stat -c %N {} + | sort
         find $top -type f -exec sha256sum {} + | sort'

@test 'ch-run-squash: runs a command in a SquashFS image' {
    run ch-run "$ch_sq" -- /bin/echo hello
    assert_status 0
    assert_line_is 0 hello
}

@test 'ch-run-squash: sees what the directory image holds' {
    run ch-run "$ch_busybox" -- /bin/sh -c "$listing"
    assert_status 0
    local want=$output
    [[ $(wc -l <<<"$want") -gt 500 ]]
    run ch-run "$ch_sq" -- /bin/sh -c "$listing"
    assert_status 0
    diff -u <(echo "$want") <(echo "$output")
    # Images made by another tool (mksquashfs), gzip and xz, run the same.
    for other in busybox.mksquashfs.sqfs busybox.xz.sqfs; do
        run ch-run "$ch_img/$other" -- /bin/sh -c "$listing"
        assert_status 0
        diff -u <(echo "$want") <(echo "$output")
    done
}

@test 'ch-run-squash: files belong to the container user; writes are refused' {
    run ch-run "$ch_sq" -- /bin/sh -c 'stat -c %u:%g /bin /bin/busybox /ch/environment | sort -u'
    assert_status 0
    [[ $output == "$(id -u):$(id -g)" ]]
    run ch-run --uid 0 --gid 0 "$ch_sq" -- stat -c %u:%g /bin/busybox
    assert_status 0
    [[ $output == 0:0 ]]
    run ch-run "$ch_sq" -- touch /bin/new
    assert_status 1
    assert_output_has 'Read-only file system'
    run ch-run -w "$ch_sq" -- touch /bin/new
    assert_status 1
    assert_output_has "warning: --write has no effect on SquashFS image $ch_sq"
    assert_output_has 'Read-only file system'
}

@test 'ch-run-squash: statfs, symlinks and a missing file' {
    run ch-run "$ch_sq" -- /bin/sh -c 'stat -f -c "%b %s %l" /; readlink /bin/sh; cat /nonexistent'
    assert_status 1
    [[ ${lines[0]} =~ ^[1-9][0-9]*\ [0-9]+\ 256$ ]]
    assert_line_is 1 /bin/busybox
    assert_output_has 'No such file or directory'
}

@test 'ch-run-squash: extended attributes from the image' {
    [[ -e $ch_img/data.xattr ]] || skip_env "the fixture's file system has no user xattrs"
    # busybox has no getfattr: run the host's through the host's loader.
    local loader
    loader=$(readlink -f "$(ldd /usr/bin/getfattr | awk '/ld-linux/ {print $1}')")
    [[ -x $loader ]] || skip_env "can't find the host's dynamic loader"
    local libdir=${loader%/*}
    run ch-run -b "$libdir:/mnt/1" -b /usr/bin:/mnt/2 "$ch_data" -- \
        "/mnt/1/${loader##*/}" --library-path /mnt/1 /mnt/2/getfattr -d -m - /data/xattr
    assert_status 0
    assert_output_has 'user.ch.test="hello from the fixture"'
}

@test 'ch-run-squash: 16 concurrent readers in one container read every byte right' {
    cat > "$out/readers.sh" <<'EOF'
# 16 readers, each reading every file of /data in its own order, at once.
cd /data
find . -type f > /tmp/files.$$
for i in $(seq 16); do
    if [ $((i % 2)) = 0 ]; then shuf /tmp/files.$$; else sort -r /tmp/files.$$; fi \
        | xargs sha256sum | sed 's|  \./|  data/|' | sort -k2 > "/mnt/0/reader.$i" &
done
wait
rm /tmp/files.$$
EOF
    "$ch_bin/ch-run" -m "$mnt" -b "$out:/mnt/0" "$ch_data" -- /bin/sh /mnt/0/readers.sh 3>&- &
    local pid=$! threads=0 n p
    # Meanwhile, count the server's threads: this is what the work is for.
    while kill -0 "$pid" 2>/dev/null; do
        for p in $(server_pids "$mnt"); do
            n=$(ls "/proc/$p/task" 2>/dev/null | wc -l)
            ((n > threads)) && threads=$n
        done
        sleep 0.05
    done
    wait "$pid"
    local i
    for i in $(seq 16); do
        diff -q "$ch_img/data.sha256" "$out/reader.$i"
    done
    [[ $(wc -l < "$ch_img/data.sha256") -gt 2800 ]]
    echo "server threads seen: $threads"
    ((threads > 1))
    wait_until 10 no_server "$mnt"
}

@test 'ch-run-squash: what reads leave of their blocks goes to the page cache, and reads right' {
    # Scattered 4 KiB reads of an 8 MiB file: the kernel's windows straddle
    # blocks, and the server stores the rest of each block it inflated.
    local f=data/big/random-11 o sums=
    [[ -f $ch_img/data/$f ]]
    for o in 0 5000 131000 262100 1000000 3000001 5242880 8388000; do
        sums+="$(tail -c +$((o + 1)) "$ch_img/data/$f" | head -c 4096 | sha256sum | cut -c1-64)"$'\n'
    done
    "$ch_bin/ch-run" -v -m "$mnt" "$ch_data" -- /bin/sh -c \
        "for o in 0 5000 131000 262100 1000000 3000001 5242880 8388000; do
             tail -c +\$((o + 1)) /$f | head -c 4096 | sha256sum | cut -c1-64
         done" > "$out/sums" 2> "$out/err"
    wait_until 10 no_server "$mnt"
    diff -u <(printf '%s' "$sums") "$out/sums"
    grep -E 'stored [1-9][0-9]* KiB in the page cache' "$out/err"
}

@test 'ch-run-squash: pages mapped and read in random orders, by 8 processes at once, are right' {
    # Whoever faults a page in first, and whatever the server stored around
    # it, every page must hold what the image holds: 4 processes map every
    # file of /data and touch its pages in an order of their own, 4 read
    # them so, all at once. Each must get what the directory twin gives,
    # and zeros past the end of each file's last page.
    command -v gcc >/dev/null || skip_env "gcc not found"
    gcc -O2 -static -o "$out/mmhash" "$BATS_TEST_DIRNAME/fixtures/mmhash.c"
    (cd "$ch_img/data" && find data -type f -print0 | xargs -0 "$out/mmhash" -r) \
        | sort -k2 > "$out/want"
    "$ch_bin/ch-run" -m "$mnt" -b "$out:/mnt/0" "$ch_data" -- /bin/sh -c '
        cd / && find data -type f > /tmp/files.$$
        for i in 1 2 3 4 5 6 7 8; do
            m=-r; [ $((i % 2)) = 0 ] && m=-m
            shuf /tmp/files.$$ | xargs /mnt/0/mmhash $m | sort -k2 > /mnt/0/got.$i &
        done
        wait; rm /tmp/files.$$'
    wait_until 10 no_server "$mnt"
    [[ $(wc -l < "$out/want") -gt 2800 ]]
    local i
    for i in 1 2 3 4 5 6 7 8; do
        diff -q "$out/want" "$out/got.$i"
    done
}

@test 'ch-run-squash: a background process keeps reading after the command exits' {
    local want
    want=$(sha256sum < "$ch_busybox/bin/busybox")
    # The command starts a reader that outlives it, then exits at once.
    # Every stream is redirected so that nothing holds bats' descriptors.
    run ch-run -m "$mnt" -b "$out:/mnt/0" "$ch_sq" -- /bin/sh -c \
        '(sleep 2; sha256sum < /bin/busybox > /mnt/0/bg.tmp; mv /mnt/0/bg.tmp /mnt/0/bg) \
         < /dev/null > /dev/null 2>&1 &' 3>&-
    assert_status 0
    [[ ! -e $out/bg ]]
    # The direct child is gone, the container is not: the server still serves.
    [[ -n $(server_pids "$mnt") ]]
    # And the mount exists only in the container's namespace.
    run grep -F "$mnt" /proc/self/mountinfo
    assert_status 1
    wait_until 20 test -e "$out/bg"
    [[ $(cat "$out/bg") == "$want" ]]
    # The last process of the container exited: the kernel dropped the
    # mount, and the server exited.
    wait_until 10 no_server "$mnt"
}

# Mounts on the host that could be ours: FUSE, or anything naming our
# images, this test's directory or its storage (the default mount point).
our_mounts() {
    cut -d' ' -f5,9,10 /proc/self/mountinfo \
        | grep -F -e fuse -e "$ch_img" -e "$BATS_TEST_TMPDIR" -e "$CH_IMAGE_STORAGE" | sort
}

@test 'ch-run-squash: nothing stays mounted on the host' {
    local before after
    before=$(our_mounts)
    run ch-run -m "$mnt" "$ch_sq" -- /bin/true
    assert_status 0
    run ch-run "$ch_sq" -- /bin/true
    assert_status 0
    after=$(our_mounts)
    diff -u <(echo "$before") <(echo "$after")
    [[ $after != *"$mnt"* && $after != *"$CH_IMAGE_STORAGE"* ]]
    wait_until 10 no_server "$mnt"
}

@test "ch-run-squash: the exit status is the command's own" {
    run ch-run -m "$mnt" "$ch_sq" -- /bin/sh -c 'exit 7'
    assert_status 7
    run ch-run "$ch_sq" -- /nonexistent-command
    assert_status 49
    wait_until 10 no_server "$mnt"
}

@test 'ch-run-squash: SIGTERM to ch-run reaches the command (143); the server goes after it' {
    "$ch_bin/ch-run" -m "$mnt" "$ch_sq" -- /bin/sleep 60 3>&- &
    local pid=$!
    # ch-run becomes the command: wait until it is sleep.
    wait_until 10 grep -qx sleep "/proc/$pid/comm"
    [[ -n $(server_pids "$mnt") ]]
    kill -TERM "$pid"
    local status=0
    wait "$pid" || status=$?
    [[ $status -eq 143 ]]
    wait_until 10 no_server "$mnt"
}

@test 'ch-run-squash: the server ignores job signals' {
    "$ch_bin/ch-run" -m "$mnt" -b "$out:/mnt/0" "$ch_sq" -- /bin/sh -c \
        'sleep 2; sha256sum < /bin/busybox > /mnt/0/sum' 3>&- &
    local pid=$! server
    wait_until 10 has_server "$mnt"
    server=$(server_pids "$mnt")
    kill -INT "$server"; kill -TERM "$server"; kill -HUP "$server"; kill -USR1 "$server"
    wait "$pid"
    [[ $(cat "$out/sum") == "$(sha256sum < "$ch_busybox/bin/busybox")" ]]
    wait_until 10 no_server "$mnt"
}

@test 'ch-run-squash: the server has a session of its own, apart from the job's process group' {
    # Slurm's proctrack/pgid waits until no process of the task's group is
    # left, zombies included; the server must not be one of them.
    "$ch_bin/ch-run" -m "$mnt" "$ch_sq" -- /bin/sleep 60 3>&- &
    local pid=$! server srv_stat run_stat
    wait_until 10 has_server "$mnt"
    server=$(server_pids "$mnt")
    # /proc/PID/stat: field 5 is the process group, 6 the session.
    read -r -a srv_stat < "/proc/$server/stat"
    read -r -a run_stat < "/proc/$pid/stat"
    kill -TERM "$pid"
    wait "$pid" || true
    wait_until 10 no_server "$mnt"
    [[ ${srv_stat[5]} -eq $server && ${srv_stat[4]} -eq $server ]]
    [[ ${srv_stat[4]} -ne ${run_stat[4]} ]]
}

@test 'ch-run-squash: concurrent containers share the default mount point' {
    local i pids=()
    for i in 1 2 3 4; do
        "$ch_bin/ch-run" -b "$out:/mnt/0" "$ch_sq" -- /bin/sh -c \
            "sleep 0.5; sha256sum < /bin/busybox > /mnt/0/sum.$i" 3>&- &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    for i in 1 2 3 4; do
        [[ $(cat "$out/sum.$i") == "$(sha256sum < "$ch_busybox/bin/busybox")" ]]
    done
}

@test 'ch-run-squash: -W writes into a throw-away layer over the image' {
    ch-run --feature overlayfs || skip_env "no unprivileged overlayfs"
    run ch-run -W "$ch_sq" -- /bin/sh -c 'echo new > /bin/new && cat /bin/new && ls /bin/busybox'
    assert_status 0
    assert_line_is 0 new
    assert_line_is 1 /bin/busybox
}

@test 'ch-run-squash: the default mount point is created' {
    [[ ! -e $CH_IMAGE_STORAGE ]]
    run ch-run "$ch_sq" -- /bin/true
    assert_status 0
    [[ -d $CH_IMAGE_STORAGE/mnt ]]
}

@test 'ch-run-squash: -m DIR must exist' {
    run ch-run -m /nonexistent "$ch_sq" -- /bin/true
    assert_status 84
    assert_line_is 0 "ch-run: can't mount $ch_sq on /nonexistent: No such file or directory"
    run ch-run -m "$ch_sq" "$ch_sq" -- /bin/true
    assert_status 84
    assert_line_is 0 "ch-run: can't mount $ch_sq on $ch_sq: not a directory"
}

@test 'ch-run-squash: -m with a directory image is ignored, with a warning' {
    run ch-run -m /nonexistent "$ch_busybox" -- /bin/true
    assert_status 0
    assert_output_has 'warning: --mount is for SquashFS images; ignored'
}

@test 'ch-run-squash: a *.sqfs file without the magic' {
    printf 'this is not a SquashFS file, just text\n' > "$BATS_TEST_TMPDIR/bad.sqfs"
    run ch-run "$BATS_TEST_TMPDIR/bad.sqfs" -- /bin/true
    assert_status 84
    assert_line_is 0 "ch-run: can't mount $BATS_TEST_TMPDIR/bad.sqfs: not a SquashFS file (bad magic)"
    # Any other file of unknown type keeps the general error.
    cp "$BATS_TEST_TMPDIR/bad.sqfs" "$BATS_TEST_TMPDIR/bad.img"
    run ch-run "$BATS_TEST_TMPDIR/bad.img" -- /bin/true
    assert_status 31
    assert_output_has 'unknown image type'
}

@test 'ch-run-squash: a truncated file' {
    local t=$BATS_TEST_TMPDIR/trunc.sqfs
    head -c 300000 "$ch_sq" > "$t"
    run ch-run -m "$mnt" "$t" -- /bin/true
    assert_status 84
    assert_line_is 0 "ch-run: can't mount $t: truncated (300000 bytes; the superblock says $(sb_u64 "$ch_sq" 40))"
    # A file too short for a superblock.
    head -c 64 "$ch_sq" > "$t"
    run ch-run "$t" -- /bin/true
    assert_status 84
    assert_output_has 'truncated (64 bytes, smaller than a SquashFS superblock)'
    [[ -z $(server_pids "$mnt") ]]
}

@test 'ch-run-squash: a corrupted file' {
    local c=$BATS_TEST_TMPDIR/corrupt.sqfs start end
    cp "$ch_sq" "$c"
    # Overwrite the whole inode table (superblock offsets 64 and 72).
    start=$(sb_u64 "$c" 64)
    end=$(sb_u64 "$c" 72)
    ((end > start))
    head -c $((end - start)) /dev/zero | tr '\0' '\377' \
        | dd of="$c" bs=1 seek="$start" conv=notrunc status=none
    run ch-run -m "$mnt" "$c" -- /bin/true
    assert_status 84
    assert_output_has "ch-run: can't mount $c: corrupted: can't read the root directory: "
    # A compression method nobody knows (superblock offset 20).
    cp "$ch_sq" "$c"
    printf '\143\000' | dd of="$c" bs=1 seek=20 conv=notrunc status=none
    run ch-run "$c" -- /bin/true
    assert_status 84
    assert_line_is 0 "ch-run: can't mount $c: compressed with unknown method 99, which this build can't read"
    [[ -z $(server_pids "$mnt") ]]
}

@test 'ch-run-squash: a damaged data block is an I/O error for that file only' {
    local d=$BATS_TEST_TMPDIR/img c=$BATS_TEST_TMPDIR/baddata.sqfs
    cp -a "$ch_busybox" "$d"
    # /aaa sorts first, so its blocks come first after the 96-byte
    # superblock: text, so they are compressed.
    mkdir "$d/aaa"
    head -c 200000 /dev/urandom | base64 > "$d/aaa/text"
    run ch-convert -q "$d" "$c"
    assert_status 0
    head -c 4000 /dev/urandom | dd of="$c" bs=1000 seek=2 conv=notrunc status=none
    run ch-run -m "$mnt" "$c" -- /bin/sh -c 'cat /aaa/text > /dev/null; echo "cat: $?"; /bin/true && echo alive'
    assert_status 0
    assert_output_has 'Input/output error'
    assert_output_has 'cat: 1'
    assert_output_has 'alive'
    wait_until 10 no_server "$mnt"
}

@test 'ch-run-squash: /dev/fuse not usable by the user' {
    only_root
    id "${CH_TEST_USER:-chtest}" >/dev/null 2>&1 || skip_env "no test user"
    local user=${CH_TEST_USER:-chtest} dev=$BATS_TEST_TMPDIR/dev
    mkdir -p "$dev"
    # In a private mount namespace, a root-owned 0600 fuse device node hides
    # the real /dev/fuse (whose mode stays as it is for everyone else).
    run unshare -m /bin/sh -c "
        mount -t tmpfs -o mode=0755 none '$dev' &&
        mknod -m 0600 '$dev/fuse' c 10 229 &&
        mount --bind '$dev/fuse' /dev/fuse &&
        cd / && runuser -u $user -- env -i USER=$user HOME=/ PATH=/usr/bin:/bin \
            '$ch_bin/ch-run' '$ch_sq' -- /bin/true"
    assert_status 84
    assert_line_is 0 "ch-run: can't mount $ch_sq: /dev/fuse is mode 0600 owned by uid 0, so this user can't use it and SquashFS images can't be mounted (fix, as root: chmod 0666 /dev/fuse; Debian's udev rules set 0666)"
    # No /dev/fuse at all (an empty /dev).
    run unshare -m /bin/sh -c "
        mount -t tmpfs none /dev &&
        cd / && runuser -u $user -- env -i USER=$user HOME=/ PATH=/usr/bin:/bin \
            '$ch_bin/ch-run' '$ch_sq' -- /bin/true"
    assert_status 84
    assert_line_is 0 "ch-run: can't mount $ch_sq: /dev/fuse is missing (fix, as root: modprobe fuse)"
}

#!/usr/bin/env bats
# ch-run-squash-hostile.bats: the hostile SquashFS corpus
# (fixtures/hostile-squash.sh, one image per named flaw) through both readers:
# ch-run's FUSE server and ch-convert's SquashFS source. Every image must give
# a clear error, never a crash, a hang or a sanitizer report:
#   - ch-run: exit 84 and "ch-run: can't mount IMG: <the flaw>" when the flaw
#     shows at mount time; otherwise the command gets an error (EIO) for the
#     damaged part, other files stay readable and the server stays up;
#   - ch-convert: exit 84 naming the image and the flaw, nothing left behind.
# Memory is bounded (skipped under sanitizers, which add their own):
#   - the FUSE server's peak RSS (VmHWM, read while the command still runs) at
#     most what ch-run(1) promises: 64 MiB, plus the block caches (36 MiB),
#     plus two blocks in flight per serving thread (at most 64 threads, and
#     these images' blocks are at most 128 KiB: 16 MiB): ch_server_max_kib;
#   - ch-convert's peak RSS (/usr/bin/time) at most 64 MiB: ch_convert_max_kib.
# The legitimate but stressful images (a 60 KiB xattr, 100 000 entries in one
# directory) must simply work.

load common

hs=$ch_img/hostile-squash
ch_server_max_kib=$(((64 + 36 + 16) * 1024))
ch_convert_max_kib=$((64 * 1024))
# Seconds before a run counts as a hang (the 100 000-entry image is slow to
# write out as a directory on a busy machine).
ch_timeout=120

setup() {
    [[ -e $hs/MANIFEST ]] || skip_env "hostile SquashFS fixtures missing (mksquashfs?)"
    [[ -r /dev/fuse && -w /dev/fuse ]] || skip_env "/dev/fuse not usable by $(id -un)"
    mnt=$BATS_TEST_TMPDIR/mnt
    out=$BATS_TEST_TMPDIR/out
    conv=$BATS_TEST_TMPDIR/conv
    mkdir -p "$mnt" "$out" "$conv"
    chmod 0777 "$out"
    # Sanitizer reports go to files (the FUSE server's stderr is /dev/null).
    san=$BATS_TEST_TMPDIR/san
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$san"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$san"
    run_opts=()
}

teardown() {
    chmod -R u+rwX "$BATS_TEST_TMPDIR" 2>/dev/null || true
}

is_sanitized() { ldd "$1" 2>/dev/null | grep -q libasan; }


fail_with() { printf '%s\noutput:\n%s\n' "$1" "$output" >&2; return 1; }

# hostile_run NAME SCRIPT: run SCRIPT (busybox sh) in image NAME through
# ch-run (plus ${run_opts[@]}), under a timeout. Then /mnt/0/after holds
# the sums of /data/ok and /bin/busybox, read after SCRIPT: the rest of the
# image must still be readable. Sets status, output, lines, and hwm_kib (the
# server's peak RSS, read before the container ends; 0 if no server ran).
hostile_run() {
    img=$hs/$1.sqfs
    local script=$2 pid p h
    rm -f "$out/done" "$out/go" "$out/after"
    # The container waits for "go" so that the server is still there to be
    # measured once the script is done.
    timeout -k 5 "$ch_timeout" "$ch_bin/ch-run" -m "$mnt" -b "$out:/mnt/0" "${run_opts[@]}" "$img" -- \
        /bin/sh -c "$script
echo \"script status: \$?\"
sha256sum /data/ok /bin/busybox > /mnt/0/after
touch /mnt/0/done
while [ ! -e /mnt/0/go ]; do sleep 0.1; done" > "$out/log" 2>&1 3>&- &
    pid=$!
    while kill -0 "$pid" 2>/dev/null && [[ ! -e $out/done ]]; do sleep 0.1; done
    hwm_kib=0
    for p in $(server_pids "$mnt"); do
        h=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        [[ -n $h ]] && ((h > hwm_kib)) && hwm_kib=$h
    done
    touch "$out/go"
    status=0
    wait "$pid" || status=$?
    output=$(cat "$out/log")
    mapfile -t lines <<<"$output"
    echo "ch-run $img: exit $status, server peak RSS ${hwm_kib} KiB"
    echo "$output"
}

# ch-run neither crashed, hung nor reported a sanitizer error; no server and
# no mount stays behind; the server's memory stayed bounded.
assert_run_clean() {
    case $status in
        124|137) fail_with "ch-run hung (killed after ${ch_timeout}s)" ;;
        13[0-9]|14[0-9]) fail_with "ch-run died of signal $((status - 128))" ;;
    esac
    if compgen -G "$san.*" >/dev/null; then
        cat "$san".* >&2
        fail_with "sanitizer report"
    fi
    [[ $output != *Sanitizer* && $output != *'runtime error:'* ]] || fail_with "sanitizer report"
    [[ $output != *'Transport endpoint is not connected'* ]] || fail_with "the FUSE server died"
    wait_until 10 no_server "$mnt" || fail_with "the FUSE server outlived the container"
    ! grep -qF " $mnt " /proc/self/mountinfo || fail_with "$mnt is still mounted"
    if ! is_sanitized "$ch_bin/ch-run" && ((hwm_kib > ch_server_max_kib)); then
        fail_with "FUSE server peak RSS ${hwm_kib} KiB > ${ch_server_max_kib} KiB"
    fi
}

# expect_mount_error REGEX: refused at mount time (exit 84), the message
# naming the image and, matching REGEX (case-insensitive), the flaw.
expect_mount_error() {
    assert_run_clean
    assert_status 84
    local want="ch-run: can't mount $img: "
    [[ ${lines[0]} == "$want"* ]] || fail_with "expected a first line starting: $want"
    grep -qiE -- "$1" <<<"${lines[0]#"$want"}" || fail_with "the message doesn't name the flaw ($1)"
}

# expect_read_error REGEX: either refused at mount time (as above), or the
# script ran and got an error matching ERRNO_REGEX (default: EIO) for the
# damaged part, while /data/ok and /bin/busybox stayed readable, or ch-run
# itself failed reading a file it needs (ch-run: ...: <errno text>) without
# crashing.
expect_read_error() {
    local flaw=$1 errno=${2:-Input/output error}
    assert_run_clean
    if [[ $status -eq 84 ]]; then
        expect_mount_error "$flaw"
    elif [[ -e $out/after ]]; then
        assert_status 0
        grep -qE -- "$errno" <<<"$output" || fail_with "expected an error: $errno"
        assert_output_has 'script status: '
        diff -u <(sha256sum < "$ch_busybox/bin/busybox" | cut -d' ' -f1) \
                <(grep /bin/busybox "$out/after" | cut -d' ' -f1)
        diff -u "$hs/ok.sha256" <(grep /data/ok "$out/after" | cut -d' ' -f1)
    else
        [[ ${lines[0]} == 'ch-run: '* ]] || fail_with "expected a ch-run error"
        grep -qE -- "$errno" <<<"${lines[0]}" || fail_with "expected ch-run's error: $errno"
    fi
}

# hostile_convert NAME: ch-convert image NAME to a directory, under a timeout
# and (without sanitizers) /usr/bin/time. Sets status, output, lines, rss_kib.
hostile_convert() {
    img=$hs/$1.sqfs
    rss_kib=0
    local rss=$BATS_TEST_TMPDIR/rss
    rm -rf "$conv" "$rss"
    mkdir -p "$conv"
    if is_sanitized "$ch_bin/ch-convert"; then
        run timeout -k 5 "$ch_timeout" "$ch_bin/ch-convert" "$img" "$conv/out"
    else
        run timeout -k 5 "$ch_timeout" /usr/bin/time -o "$rss" -f %M "$ch_bin/ch-convert" "$img" "$conv/out"
        rss_kib=$(tail -n 1 "$rss")
    fi
    echo "ch-convert $img: exit $status, peak RSS ${rss_kib} KiB"
    echo "$output"
}

assert_convert_clean() {
    case $status in
        124|137) fail_with "ch-convert hung (killed after ${ch_timeout}s)" ;;
        13[0-9]|14[0-9]) fail_with "ch-convert died of signal $((status - 128))" ;;
    esac
    if compgen -G "$san.*" >/dev/null; then
        cat "$san".* >&2
        fail_with "sanitizer report"
    fi
    [[ $output != *Sanitizer* && $output != *'runtime error:'* ]] || fail_with "sanitizer report"
    ((rss_kib <= ch_convert_max_kib)) || fail_with "ch-convert peak RSS ${rss_kib} KiB > ${ch_convert_max_kib} KiB"
}

# expect_convert_error REGEX: exit 84, "can't read IMG" and the flaw
# (REGEX, case-insensitive) in the message; nothing left at or beside OUT.
expect_convert_error() {
    assert_convert_clean
    assert_status 84
    local want="ch-convert: can't read $img: "
    [[ ${lines[0]} == "$want"* ]] || fail_with "expected a first line starting: $want"
    grep -qiE -- "$1" <<<"${lines[0]#"$want"}" || fail_with "the message doesn't name the flaw ($1)"
    assert_empty_dir "$conv"
}

# Tools from the host, run in the container through the host's loader:
# busybox has no getfattr, and its ls takes a failed readdir(3) for the end
# of the directory. Sets run_opts, getfattr and ls (commands to run).
host_tools() {
    command -v getfattr >/dev/null || skip_env "getfattr (Debian: attr) not installed"
    local loader
    loader=$(readlink -f "$(ldd "$(command -v getfattr)" | awk '/ld-linux/ {print $1}')")
    [[ -x $loader ]] || skip_env "can't find the host's dynamic loader"
    [[ $(dirname "$(command -v ls)") == "$(dirname "$(command -v getfattr)")" ]] \
        || skip_env "ls and getfattr in different directories"
    run_opts=(-b "${loader%/*}:/mnt/1" -b "$(dirname "$(command -v getfattr)"):/mnt/2")
    local host="/mnt/1/${loader##*/} --library-path /mnt/1 /mnt/2"
    getfattr="$host/getfattr --absolute-names"
    ls="$host/ls"
}

# ---- the base images: the harness itself works ---------------------------

@test 'squash-hostile: the base images read whole (mksquashfs, ch-convert)' {
    local b
    for b in good-mksquashfs good-ch-convert; do
        hostile_run "$b" 'cat /data/ok /data/small /data/big /data/inflate | wc -c; ls /data/loop/self'
        assert_run_clean
        assert_status 0
        assert_line_is 0 $((2 * 4096 + 300 + 100 + 4 * 4096 + 500 + 4096))
        assert_output_has 'script status: 0'
        diff -u "$hs/ok.sha256" <(grep /data/ok "$out/after" | cut -d' ' -f1)
        hostile_convert "$b"
        assert_convert_clean
        assert_status 0
        diff -u "$hs/ok.sha256" <(sha256sum < "$conv/out/data/ok" | cut -d' ' -f1)
        [[ -d $conv/out/data/loop/self ]]
    done
}

# ---- the three the issue saw ----------------------------------------------

@test 'squash-hostile: ch-run: a root directory entry whose name size is ff ff' {
    hostile_run dirent-name-ffff-root 'ls /'
    expect_mount_error 'name|director'
}

@test 'squash-hostile: ch-convert: a root directory entry whose name size is ff ff' {
    hostile_convert dirent-name-ffff-root
    expect_convert_error 'name|director'
}

@test 'squash-hostile: ch-run: a /data/names entry whose name size is ff ff' {
    host_tools
    hostile_run dirent-name-ffff-data "$ls /data/names"
    expect_read_error 'name|director'
}

@test 'squash-hostile: ch-convert: a /data/names entry whose name size is ff ff' {
    hostile_convert dirent-name-ffff-data
    expect_convert_error 'name|director'
}

@test 'squash-hostile: ch-run: block size 2 GiB' {
    hostile_run block-size-2g 'true'
    expect_mount_error 'block size'
}

@test 'squash-hostile: ch-convert: block size 2 GiB' {
    hostile_convert block-size-2g
    expect_convert_error 'block size'
}

@test "squash-hostile: ch-run: block size that disagrees with block_log" {
    hostile_run block-size-log-mismatch 'true'
    expect_mount_error 'block size|block_log'
}

@test "squash-hostile: ch-convert: block size that disagrees with block_log" {
    hostile_convert block-size-log-mismatch
    expect_convert_error 'block size|block_log'
}

@test 'squash-hostile: ch-run: fragment count 0 while files use fragments' {
    hostile_run fragments-zero 'cat /data/small'
    expect_read_error 'fragment'
}

@test 'squash-hostile: ch-convert: fragment count 0 while files use fragments' {
    hostile_convert fragments-zero
    expect_convert_error 'fragment'
}

@test 'squash-hostile: ch-run: a fragment index past the fragment table' {
    hostile_run fragment-index-out-of-range 'cat /data/small'
    expect_read_error 'fragment'
}

@test 'squash-hostile: ch-convert: a fragment index past the fragment table' {
    hostile_convert fragment-index-out-of-range
    expect_convert_error 'fragment'
}

# ---- truncated -------------------------------------------------------------

@test 'squash-hostile: ch-run: truncated at four lengths' {
    local t
    for t in superblock data inodes last-byte; do
        hostile_run "truncated-$t" 'true'
        expect_mount_error 'truncated'
    done
}

@test 'squash-hostile: ch-convert: truncated at four lengths' {
    local t
    for t in superblock data inodes last-byte; do
        hostile_convert "truncated-$t"
        expect_convert_error 'truncated'
    done
}

# ---- impossible table offsets ------------------------------------------------

@test 'squash-hostile: ch-run: impossible table offsets' {
    local t
    for t in id-past-end id-at-end inode-after-dir past-bytes-used; do
        hostile_run "table-$t" 'true'
        expect_mount_error 'table|superblock'
    done
    # Only ordering tells this one from a good image; reading the fragment
    # table's pointers out of the inode table may also fail later.
    hostile_run table-frag-in-inodes 'cat /data/small'
    expect_read_error 'table|superblock|fragment'
}

@test 'squash-hostile: ch-convert: impossible table offsets' {
    local t
    for t in id-past-end id-at-end inode-after-dir past-bytes-used frag-in-inodes; do
        hostile_convert "table-$t"
        expect_convert_error 'table|superblock|fragment'
    done
}

# ---- inode references past the end ---------------------------------------------

@test 'squash-hostile: ch-run: a root inode reference past the inode table' {
    local t
    for t in past-end bad-offset; do
        hostile_run "root-ref-$t" 'true'
        expect_mount_error 'root|inode|reference'
    done
}

@test 'squash-hostile: ch-convert: a root inode reference past the inode table' {
    local t
    for t in past-end bad-offset; do
        hostile_convert "root-ref-$t"
        expect_convert_error 'root|inode|reference'
    done
}

@test "squash-hostile: ch-run: a directory's entries point past the inode table" {
    hostile_run dirent-inode-past-end 'ls -l /data/loop/self'
    expect_read_error 'inode|reference|director'
    hostile_run dirent-offset-past-block 'ls -l /data/loop/self'
    expect_read_error 'inode|reference|director'
}

@test "squash-hostile: ch-convert: a directory's entries point past the inode table" {
    hostile_convert dirent-inode-past-end
    expect_convert_error 'inode|reference|director'
    hostile_convert dirent-offset-past-block
    expect_convert_error 'inode|reference|director|offset'
}

# ---- directory cycles ------------------------------------------------------------

@test 'squash-hostile: ch-run: a directory that contains itself, or the root' {
    local t
    for t in itself root; do
        # find must end: the kernel or the server refuses the cycle.
        hostile_run "dir-contains-$t" 'ls /data/loop/self/self/self; find /data > /dev/null'
        expect_read_error 'itself|cycle|loop' 'Input/output error|Too many levels of symbolic links'
    done
}

@test 'squash-hostile: ch-convert: a directory that contains itself, or the root' {
    local t
    for t in itself root; do
        hostile_convert "dir-contains-$t"
        expect_convert_error 'itself|cycle|loop'
    done
}

# ---- directories shared by many parents -------------------------------------

@test 'squash-hostile: ch-run: 20 levels of directories shared by two parents each' {
    # Serving needs no expansion: a path through the shared directories
    # resolves like any other, whichever parent it takes.
    hostile_run dirs-shared 'cat /data/share/b/a/b/b/a/b/a/a/b/b/a/b/b/a/a/b/a/b/b/a/leaf'
    assert_run_clean
    assert_status 0
    assert_output_has 'leaf'
    assert_output_has 'script status: 0'
}

@test 'squash-hostile: ch-convert: 20 levels of directories shared by two parents each' {
    # Copying them out would write 2^20 entries: refused at the documented cap.
    hostile_convert dirs-shared
    expect_convert_error 'entries under directories that appear in several places'
}

# ---- file block lists --------------------------------------------------------------

@test "squash-hostile: ch-run: a file's block list disagrees with its size or the image" {
    local t
    for t in size-huge size-larger block-size-word-huge blocks-past-end; do
        hostile_run "file-$t" 'cat /data/big > /dev/null'
        expect_read_error 'block|inode|size'
    done
}

@test "squash-hostile: ch-convert: a file's block list disagrees with its size or the image" {
    local t
    for t in size-huge size-larger block-size-word-huge blocks-past-end; do
        hostile_convert "file-$t"
        expect_convert_error 'block|inode|size|data|truncated'
    done
}

@test 'squash-hostile: ch-run: a block that inflates to more than the block size' {
    hostile_run inflate-over-block 'cat /data/inflate > /dev/null'
    expect_read_error 'inflate|block'
}

@test 'squash-hostile: ch-convert: a block that inflates to more than the block size' {
    hostile_convert inflate-over-block
    expect_convert_error 'inflate|block|size'
}

# ---- xattrs ------------------------------------------------------------------------

@test 'squash-hostile: ch-run: an xattr claiming 4 GiB, xattrs claiming 2^31 pairs' {
    host_tools
    local t
    for t in size-4g count-huge; do
        hostile_run "xattr-$t" "cat /data/xattr; $getfattr -d -m - /data/xattr"
        # The file's data stays readable; its xattrs are an error (whatever
        # errno the server picks), not 4 GiB of memory.
        expect_read_error 'xattr' 'Input/output error|Argument list too long|Numerical result out of range'
        assert_output_has 'has an xattr'
        assert_output_lacks 'user.ch.test='
    done
}

@test 'squash-hostile: ch-convert: an xattr claiming 4 GiB, xattrs claiming 2^31 pairs' {
    local t
    for t in size-4g count-huge; do
        hostile_convert "xattr-$t"
        expect_convert_error 'xattr'
    done
}

@test 'squash-hostile: ch-run: a 60 KiB xattr value reads whole' {
    host_tools
    hostile_run xattr-60k "$getfattr --only-values -n user.big /data/bigxattr | wc -c"
    assert_run_clean
    assert_status 0
    assert_line_is 0 61440
    assert_output_has 'script status: 0'
}

@test 'squash-hostile: ch-convert: a 60 KiB xattr value converts' {
    hostile_convert xattr-60k
    assert_convert_clean
    # The destination's file system may refuse a value this big (ext4 without
    # ea_inode): then a warning, and the conversion goes on.
    assert_status 0
    [[ $(cat "$conv/out/data/bigxattr") == 'a 60 KiB xattr' ]]
    if [[ $output != *"can't set extended attributes"* ]] && command -v getfattr >/dev/null; then
        [[ $(getfattr --only-values -n user.big "$conv/out/data/bigxattr" | wc -c) -eq 61440 ]]
    fi
}

# ---- 100 000 entries in one directory -------------------------------------------------

@test 'squash-hostile: ch-run: 100 000 entries in one directory' {
    need_scope standard
    [[ -e $hs/dir-100k.sqfs ]] || skip_env "no 100 000-entry image"
    hostile_run dir-100k 'ls /many | wc -l; ls -l /many/f099999 /many/f000000 | wc -l'
    assert_run_clean
    assert_status 0
    assert_line_is 0 100000
    assert_line_is 1 2
}

@test 'squash-hostile: ch-convert: 100 000 entries in one directory' {
    need_scope standard
    [[ -e $hs/dir-100k.sqfs ]] || skip_env "no 100 000-entry image"
    hostile_convert dir-100k
    assert_convert_clean
    assert_status 0
    [[ $(find "$conv/out/many" -type f | wc -l) -eq 100000 ]]
}

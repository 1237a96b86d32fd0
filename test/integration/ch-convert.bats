# ch-convert.bats: format conversions end to end, and the hostile-input
# matrix. Every bad-input test checks the exit status, the message, and that
# nothing was left at OUT (no staging debris either). Hostile tarballs come
# from fixtures/hostile-tars.sh ($ch_img/hostile).
load common

hostile=$ch_img/hostile

setup() {
    cd "$BATS_TEST_TMPDIR" || return 1
}

teardown() {
    # Images may hold read-only directories; let bats clean up as a user.
    chmod -R u+rwX "$BATS_TEST_TMPDIR" 2>/dev/null || true
    [[ -z ${shm_dir:-} ]] || rm -rf "$shm_dir"
}

# manifest DIR: one line per entry (path, type, mode, size or target, mtime
# in whole seconds), sorted; what a conversion must keep.
manifest() {
    (cd "$1" && find . -mindepth 1 \
        \( -type d -printf '%P|d|%m||%T@\n' \) -o \
        \( -type l -printf '%P|l|%m|%l|\n' \) -o \
        \( -type f -printf '%P|f|%m|%s|%T@\n' \) -o -printf '%P|OTHER\n' \
        | sed -E 's/\.[0-9]+$//' | LC_ALL=C sort)
}

# owner_writable: a manifest as the unpacking rules leave it: files u+rw,
# directories u+rwx (so the user can always manage and delete the image).
owner_writable() {
    local line path type mode rest
    while IFS= read -r line; do
        IFS='|' read -r path type mode rest <<< "$line"
        case $type in
            f) printf '%s|f|%o|%s\n' "$path" $((8#$mode | 8#600)) "$rest" ;;
            d) printf '%s|d|%o|%s\n' "$path" $((8#$mode | 8#700)) "$rest" ;;
            *) printf '%s\n' "$line" ;;
        esac
    done
}

# make_input DIR: a small image with everything a conversion must keep.
make_input() {
    local d=$1
    mkdir -p "$d"/{bin,dev,usr/lib,etc,empty,ro,tmp}
    # what unpacking a tarball would otherwise add (unpack_init)
    mkdir -p "$d"/{proc,sys,ch,mnt/{0..9}}
    touch "$d"/etc/{hosts,resolv.conf}
    printf '#!/bin/sh\necho hello\n' > "$d/bin/hello"
    chmod 0755 "$d/bin/hello"
    printf 'secret\n' > "$d/etc/private"
    chmod 0600 "$d/etc/private"
    printf 'read only\n' > "$d/etc/readonly"
    chmod 0444 "$d/etc/readonly"
    printf 'lib\n' > "$d/usr/lib/libx.so.1"
    ln -s libx.so.1 "$d/usr/lib/libx.so"          # relative
    ln -s /usr/lib "$d/lib"                        # absolute, to a directory
    ln -s /nonexistent "$d/dangling"               # dangling
    ln "$d/bin/hello" "$d/usr/hello-hardlink"      # hard link
    printf 'in ro\n' > "$d/ro/f"
    chmod 0555 "$d/ro"                             # read-only directory
    chmod 1777 "$d/tmp"
    # sparse: 100 MiB with 8 KiB of data in the middle and 4 bytes at the end
    truncate -s 100M "$d/sparse"
    head -c 8192 /dev/urandom | dd of="$d/sparse" bs=4096 seek=1000 conv=notrunc status=none
    printf 'tail' | dd of="$d/sparse" bs=1 seek=$((100 * 1024 * 1024 - 4)) conv=notrunc status=none
    touch -d '2001-02-03 04:05:06' "$d/etc/private" "$d/usr/lib"
}

# roundtrip MIDDLE: ./in -> MIDDLE -> ./out, then compare.
roundtrip() {
    make_input in
    run ch-convert ./in "$1"
    assert_status 0
    run ch-convert "$1" ./out
    assert_status 0
    diff -u <(manifest in | owner_writable) <(manifest out)
    # the data, including what is behind the read-only directory
    cmp in/sparse out/sparse
    cmp in/ro/f out/ro/f
    [[ $(stat -c %a out/ro) == 755 && $(stat -c %a out/etc/readonly) == 644 ]]
    # hard links stay hard links
    [[ $(stat -c %i out/bin/hello) == "$(stat -c %i out/usr/hello-hardlink)" ]]
    # holes stay holes: far less than 100 MiB allocated
    local blocks
    blocks=$(stat -c %b out/sparse)
    ((blocks * 512 < 1024 * 1024)) || { echo "sparse file uses $blocks blocks" >&2; return 1; }
    check_clean "$BATS_TEST_TMPDIR/nonexistent-probe"   # no staging debris here
}

# huge_sparse_round_trip EXT: a 5 GiB file that is all hole but its first 5
# and last 3 bytes goes through a file of type EXT and back: the size, both
# ends and the holes (in the output file and in the directory) are kept.
huge_sparse_round_trip() {
    local ext=$1
    mkdir in
    truncate -s 5G in/huge
    printf 'start' | dd of=in/huge conv=notrunc status=none
    printf 'end' | dd of=in/huge bs=1 seek=$((5 * 1024 * 1024 * 1024 - 3)) conv=notrunc status=none
    run ch-convert ./in "huge.$ext"
    assert_status 0
    (($(stat -c %s "huge.$ext") < 1024 * 1024))
    run ch-convert "huge.$ext" ./out
    assert_status 0
    [[ $(stat -c %s out/huge) -eq $((5 * 1024 * 1024 * 1024)) ]]
    (($(stat -c %b out/huge) * 512 < 1024 * 1024))
    [[ $(head -c5 out/huge) == start ]]
    [[ $(tail -c3 out/huge) == end ]]
}

@test 'ch-convert: --help lists every option, --version prints one' {
    run ch-convert --help
    assert_status 0
    for opt in --dry-run --help --in-fmt --no-clobber --no-xattrs --out-fmt --quiet \
               --storage --tmp --verbose --version --xattrs; do
        assert_output_has "$opt"
    done
    run ch-convert --version
    assert_status 0
    [[ $output =~ ^[0-9]+\.[0-9]+ ]]
}

@test 'ch-convert: usage errors exit 64' {
    run ch-convert onlyone
    assert_status 64
    assert_output_has 'IN and OUT are required'
    run ch-convert -i bogus a b
    assert_status 64
    assert_output_has "--in-fmt: unknown format 'bogus'"
    mkdir in
    run ch-convert ./in ./out
    assert_status 64
    assert_output_has 'input and output formats are both dir'
    run ch-convert ./in out.tar.bz2
    assert_status 64
    assert_output_has "can't choose a tar compression for out.tar.bz2"
    assert_output_has '*.tar.zst'
    check_clean out.tar.bz2
}

@test 'ch-convert: a missing input is an error' {
    run ch-convert ./nonexistent ./out
    assert_status 31
    assert_output_has "can't read ./nonexistent: No such file or directory"
    run ch-convert no-such-image ./out
    assert_status 31
    assert_output_has "can't find no-such-image: no such file or directory, and no image of that name in storage"
    check_clean out
}

@test 'ch-convert: -n infers formats (input by content, output by name) and changes nothing' {
    mkdir in
    tar cf in.tar -C in .
    cp in.tar looks-like.sqfs
    printf 'hsqs' > real.squashfs
    run ch-convert -n ./in out.sqfs
    assert_status 0
    assert_line_is 0 'would convert ./in (dir) to out.sqfs (squash)'
    run ch-convert -n ./in foo/bar:1.0
    assert_output_has 'would convert ./in (dir) to storage image foo/bar:1.0 (ch-image) at '
    assert_output_has '/img/foo%bar+1.0'
    run ch-convert -n looks-like.sqfs ./out
    assert_line_is 0 'would convert looks-like.sqfs (tar) to ./out (dir)'
    run ch-convert -n real.squashfs ./out
    assert_line_is 0 'would convert real.squashfs (squash) to ./out (dir)'
    run ch-convert -n in.tar /tmp/x.tgz
    assert_status 64   # tar to tar
    run ch-convert -n -o dir in.tar out-dir
    assert_line_is 0 'would convert in.tar (tar) to out-dir (dir)'
    run ch-convert -n -i tar looks-like.sqfs out.tar.zst
    assert_status 64
    check_clean out.sqfs
    check_clean out
}

@test 'ch-convert: a name in storage is the stored image, whatever file of that name the working directory holds' {
    # As ch-run reads it: the working directory may be /tmp, where anyone
    # can put a file named like the user's image.
    mkdir stored planted
    echo stored > stored/which
    echo planted > planted/which
    run ch-convert ./stored planted-name
    assert_status 0
    tar cf planted-name -C planted .
    run ch-convert -n planted-name ./out
    assert_status 0
    assert_line_is 0 'would convert storage image planted-name (ch-image) to ./out (dir)'
    run ch-convert planted-name ./out
    assert_status 0
    [[ $(cat out/which) == stored ]]
    # ./NAME is the file; so is a name that storage does not have
    run ch-convert ./planted-name ./out-file
    assert_status 0
    [[ $(cat out-file/which) == planted ]]
    mv planted-name other-name
    run ch-convert other-name ./out-other
    assert_status 0
    [[ $(cat out-other/which) == planted ]]
}

@test 'ch-convert: round trip dir -> tar -> dir' {
    roundtrip out.tar
}

@test 'ch-convert: round trip dir -> tar.gz -> dir' {
    roundtrip out.tar.gz
    [[ $(head -c2 out.tar.gz | od -An -tx1 | tr -d ' ') == 1f8b ]]
}

@test 'ch-convert: round trip dir -> tar.zst -> dir' {
    roundtrip out.tar.zst
    [[ $(head -c4 out.tar.zst | od -An -tx1 | tr -d ' ') == 28b52ffd ]]
    zstd -dc out.tar.zst | tar tf - > /dev/null   # GNU tar agrees it is a tar
}

@test 'ch-convert: tarballs compressed with xz or bzip2 are read by their content, whatever the name' {
    make_input in
    # GNU tar writes them; the names say nothing about the compression.
    tar -C in -cJf by-xz.img .
    tar -C in -cjf by-bzip2.data .
    [[ $(head -c6 by-xz.img | od -An -tx1 | tr -d ' ') == fd377a585a00 ]]
    [[ $(head -c3 by-bzip2.data) == BZh ]]
    for t in by-xz.img by-bzip2.data; do
        run ch-convert -n "$t" ./out
        assert_status 0
        assert_output_has "would convert $t (tar) to ./out (dir)"
        run ch-convert "$t" ./out
        assert_status 0
        diff -u <(manifest in | owner_writable) <(manifest out)
        cmp in/sparse out/sparse
        rm -rf out
    done
}

@test 'ch-convert: round trip dir -> ch-image -> dir' {
    roundtrip roundtrip-image
    [[ -d $CH_IMAGE_STORAGE/img/roundtrip-image/usr/lib ]]
    run ch-convert -s "$BATS_TEST_TMPDIR/other" ./in other-image
    assert_status 0
    [[ -d $BATS_TEST_TMPDIR/other/img/other-image/bin ]]
}

@test 'ch-convert: round trip dir -> squash -> dir' {
    roundtrip out.sqfs
    [[ $(head -c4 out.sqfs) == hsqs ]]
}

@test 'ch-convert: round trip dir -> squash -> tar.zst -> squash, and ch-run runs it' {
    make_input in
    run ch-convert ./in a.sqfs
    assert_status 0
    run ch-convert a.sqfs b.tar.zst
    assert_status 0
    run ch-convert b.tar.zst c.squashfs
    assert_status 0
    run ch-convert c.squashfs ./out
    assert_status 0
    diff -u <(manifest in | owner_writable) <(manifest out)
    [[ $(stat -c %i out/bin/hello) == "$(stat -c %i out/usr/hello-hardlink)" ]]
    # Our SquashFS runs in ch-run (with the busybox image's /bin/sh).
    run ch-convert "$ch_busybox" bb.sqfs
    assert_status 0
    run ch-run bb.sqfs -- /bin/sh -c 'echo from squash'
    assert_status 0
    assert_line_is 0 'from squash'
}

@test 'ch-convert: squash output: same input gives the same bytes; unsquashfs reads it' {
    make_input in
    run ch-convert ./in one.sqfs
    assert_status 0
    run ch-convert ./in two.sqfs
    assert_status 0
    cmp one.sqfs two.sqfs
    command -v unsquashfs > /dev/null || skip_env 'unsquashfs (squashfs-tools) not installed'
    unsquashfs -no-progress -d viaunsquash one.sqfs > /dev/null
    diff -u <(manifest in | owner_writable | cut -d'|' -f1-3) <(manifest viaunsquash | cut -d'|' -f1-3)
    cmp in/sparse viaunsquash/sparse
}

@test 'ch-convert: a >4 GiB sparse file survives squash and back, holes kept' {
    huge_sparse_round_trip sqfs
}

@test 'ch-convert: user.* xattrs survive squash' {
    command -v setfattr > /dev/null || skip_env 'setfattr (package attr) not installed'
    make_input in
    setfattr -n user.color -v blue in/etc/private 2> /dev/null || skip_env "no user xattrs on $PWD"
    run ch-convert ./in x.sqfs
    assert_status 0
    run ch-convert x.sqfs ./out
    assert_status 0
    [[ $(getfattr --only-values -n user.color out/etc/private) == blue ]]
}

@test 'ch-convert: hostile input into squash leaves nothing' {
    run ch-convert "$hostile/dotdot.tar" out.sqfs
    assert_status 31
    assert_output_has "entry 'a/../../ch-convert-escape': path leaves the image"
    check_clean out.sqfs
}

@test 'ch-convert: a truncated or corrupted SquashFS input exits 84 and leaves nothing' {
    make_input in
    run ch-convert ./in good.sqfs
    assert_status 0
    head -c $(($(stat -c %s good.sqfs) / 2)) good.sqfs > trunc.sqfs
    run ch-convert trunc.sqfs ./out
    assert_status 84
    assert_output_has "can't read trunc.sqfs"
    assert_output_has 'truncated'
    check_clean out
    cp good.sqfs corrupt.sqfs
    # Overwrite the metadata tables at the end of the used bytes (after them
    # comes only padding) with garbage.
    local used
    used=$(od -An -t u8 -j 40 -N 8 good.sqfs | tr -d ' ')
    # (0xff, not random bytes: every pointer in there then points past the end.)
    head -c 250 /dev/zero | tr '\0' '\377' \
        | dd of=corrupt.sqfs bs=1 seek=$((used - 250)) conv=notrunc status=none
    run ch-convert corrupt.sqfs ./out2
    echo "$output"
    assert_status 84
    assert_output_has "can't read corrupt.sqfs"
    check_clean out2
}

@test 'ch-convert: a killed conversion to squash leaves nothing and is swept' {
    mkdir in
    head -c 200M /dev/urandom > in/big
    "$ch_bin/ch-convert" ./in out.sqfs &
    pid=$!
    for _ in $(seq 100); do
        compgen -G '.out.sqfs.ch-staging.*' > /dev/null && break
        sleep 0.1
    done
    kill -KILL "$pid"
    wait "$pid" || true
    [[ ! -e out.sqfs ]]
    rm in/big
    run ch-convert ./in out.sqfs
    assert_status 0
    [[ -z $(compgen -G '.out.sqfs.ch-staging.*') ]]
}

@test 'ch-convert: tar output is readable by GNU tar, with owners 0' {
    make_input in
    run ch-convert ./in out.tar.gz
    assert_status 0
    tar tvzf out.tar.gz > listing
    grep -E '^-rwxr-xr-x 0/0 .* bin/hello$' listing
    grep -E '^hrwxr-xr-x 0/0 .* usr/hello-hardlink link to bin/hello$' listing
    grep -E '^lrwxrwxrwx 0/0 .* lib -> /usr/lib$' listing
    mkdir gnu && tar xzf out.tar.gz -C gnu
    cmp in/sparse gnu/sparse
}

@test 'ch-convert: user.* xattrs are kept, and dropped with --no-xattrs' {
    command -v setfattr > /dev/null || skip_env 'setfattr (package attr) not installed'
    make_input in
    setfattr -n user.color -v blue in/etc/private 2> /dev/null || skip_env "no user xattrs on $PWD"
    setfattr -n user.dir -v yes in/usr
    run ch-convert ./in out.tar
    assert_status 0
    run ch-convert out.tar ./out
    assert_status 0
    [[ $(getfattr --only-values -n user.color out/etc/private) == blue ]]
    [[ $(getfattr --only-values -n user.dir out/usr) == yes ]]
    run ch-convert --no-xattrs out.tar ./out2
    assert_status 0
    run getfattr -d out2/etc/private
    assert_output_lacks user.color
    # --xattrs after --no-xattrs wins
    run ch-convert --no-xattrs --xattrs out.tar ./out3
    [[ $(getfattr --only-values -n user.color out3/etc/private) == blue ]]
}

@test 'ch-convert: a >4 GiB sparse file survives tar.gz and back, holes kept' {
    huge_sparse_round_trip tar.gz
}

@test 'ch-convert: paths near the 4096-byte limit, longer than PATH_MAX under OUT' {
    run ch-convert "$hostile/longname.tar" ./out
    assert_status 0
    # walk down one component at a time: the whole path is too long for open(2)
    (cd out && for c in a b c d e f g h i j k l m n o p; do cd "$(printf '%250s' '' | tr ' ' "$c")"; done && [[ $(cat leaf) == deep ]])
    run ch-convert ./out long.tar.zst
    assert_status 0
    run ch-convert long.tar.zst ./back
    assert_status 0
    diff <(manifest out) <(manifest back)
}

@test 'ch-convert: non-ASCII names are kept as bytes, without warnings' {
    mkdir in
    touch in/Főtanúsítvány.crt in/$'latin1-\xe9t\xe9'
    run env LC_ALL=C "$ch_bin/ch-convert" ./in out.tar.gz
    assert_status 0
    [[ -z $output ]]
    run ch-convert out.tar.gz ./out
    assert_status 0
    [[ -z $output ]]
    [[ -e out/Főtanúsítvány.crt && -e out/$'latin1-\xe9t\xe9' ]]
}

@test 'ch-convert: 50 000 entries' {
    # Creating 50 000 files takes GNU tar ~45 s on a slow disk and ~1 s on
    # tmpfs; it is our handling of many entries under test, not the disk.
    local dir
    if shm_dir=$(mktemp -d /dev/shm/ch-convert-test.XXXXXX 2> /dev/null); then
        dir=$shm_dir   # teardown removes it
    else
        need_scope full
        dir=$BATS_TEST_TMPDIR
    fi
    run ch-convert "$hostile/many.tar" "$dir/out"
    assert_status 0
    # plus what unpack_init adds: 2 files (etc/hosts, etc/resolv.conf) and
    # 19 directories (bin dev etc mnt proc sys tmp usr ch, mnt/0..9)
    [[ $(find "$dir/out" -type f | wc -l) -eq $((49901 + 2)) ]]
    [[ $(find "$dir/out" -mindepth 1 -type d | wc -l) -eq $((100 + 19)) ]]
    run ch-convert "$dir/out" "$dir/many.tar.zst"
    assert_status 0
    [[ $(zstd -dc "$dir/many.tar.zst" | tar tf - | wc -l) -eq $((50001 + 21)) ]]
}

@test 'ch-convert: replacing an existing image is allowed; other directories are refused' {
    make_input in
    run ch-convert ./in out.tar
    assert_status 0
    run ch-convert out.tar ./img
    assert_status 0
    run ch-convert out.tar ./img          # looks like an image (bin, dev, usr): replaced
    assert_status 0
    [[ -x img/bin/hello ]]
    mkdir precious
    echo data > precious/thesis.tex
    run ch-convert out.tar ./precious
    assert_status 31
    assert_output_has "can't replace ./precious: it is a directory that doesn't look like an image"
    [[ $(cat precious/thesis.tex) == data ]]
    run ch-convert ./in ./in/usr/inside.tar    # would read its own staging file
    assert_status 31
    assert_output_has "can't write ./in/usr/inside.tar: it is inside the input ./in"
    check_clean in/usr/inside.tar
    echo not an archive > notes.txt
    run ch-convert -o tar ./in notes.txt
    assert_status 31    # -o tar writes plain tar under any name, but not over a text file
    assert_output_has "can't replace notes.txt: it is a file that is not an image archive"
    [[ $(cat notes.txt) == 'not an archive' ]]
    check_clean "$BATS_TEST_TMPDIR/probe"
}

@test 'ch-convert: --no-clobber refuses any existing output' {
    make_input in
    run ch-convert ./in out.tar
    assert_status 0
    before=$(md5sum < out.tar)
    run ch-convert --no-clobber ./in out.tar
    assert_status 31
    assert_output_has "can't write out.tar: it exists and --no-clobber was given"
    [[ $(md5sum < out.tar) == "$before" ]]
    mkdir empty
    run ch-convert --no-clobber out.tar ./empty
    assert_status 31
    assert_output_has 'it exists and --no-clobber was given'
    check_clean "$BATS_TEST_TMPDIR/probe"
}

@test 'ch-convert: -v prints one line per phase; --tmp is accepted and ignored' {
    make_input in
    run ch-convert -v --tmp /nonexistent ./in out.tar
    assert_status 0
    assert_output_has 'ignoring --tmp /nonexistent'
    assert_output_has 'input: ./in (dir)'
    assert_output_has 'output: out.tar (tar)'
    assert_output_has 'publishing out.tar'
    run ch-convert -q out.tar ./out
    assert_status 0
    [[ -z $output ]]
}

@test 'ch-convert: a progress meter on a terminal, none in batch' {
    command -v script > /dev/null || skip_env "script (util-linux) not installed"
    # Long enough (about a second) for the meter's 10 redraws a second.
    mkdir in
    head -c $((96 * 1024 * 1024)) /dev/urandom > in/big
    # stderr a terminal: entries and bytes, redrawn in place, then erased
    script -qefc "$ch_bin/ch-convert ./in tty.tar.gz" typescript > /dev/null
    [[ -f tty.tar.gz ]]
    grep -aq 'ch-convert: .*entries, .*iB' typescript
    grep -aq $'\r\e\[K' typescript
    # stderr a file or a pipe (a batch job): silent
    run ch-convert ./in batch.tar.gz
    assert_status 0
    [[ -z $output ]]
}

@test 'ch-convert: the output appears only at the end; a killed conversion is swept next time' {
    mkdir in
    head -c 300M /dev/urandom > in/big   # gzip needs seconds for this
    "$ch_bin/ch-convert" ./in out.tar.gz &   # not the function: $! must be ch-convert itself
    pid=$!
    for _ in $(seq 100); do   # wait until it has started writing
        compgen -G '.out.tar.gz.ch-staging.*' > /dev/null && break
        sleep 0.1
    done
    [[ ! -e out.tar.gz ]]     # not there while in progress
    kill -KILL "$pid"
    wait "$pid" || true
    [[ ! -e out.tar.gz ]]
    compgen -G '.out.tar.gz.ch-staging.*' > /dev/null   # the killed run's debris
    rm in/big
    run ch-convert ./in out.tar.gz
    assert_status 0
    [[ -e out.tar.gz ]]
    [[ -z $(compgen -G '.out.tar.gz.ch-staging.*') ]]   # swept
}

@test 'ch-convert: SIGTERM ends a conversion and leaves nothing' {
    mkdir in
    head -c 300M /dev/urandom > in/big
    "$ch_bin/ch-convert" ./in out.tar.gz 2> err &
    pid=$!
    for _ in $(seq 100); do
        compgen -G '.out.tar.gz.ch-staging.*' > /dev/null && break
        sleep 0.1
    done
    kill -TERM "$pid"
    status=0
    wait "$pid" || status=$?
    output=$(cat err)
    assert_status 31
    assert_output_has 'ch-convert: interrupted'
    check_clean out.tar.gz
}

# ---- hostile input ---------------------------------------------------------

@test 'ch-convert: hostile: .. in a name' {
    run ch-convert "$hostile/dotdot.tar" ./out
    assert_status 31
    assert_output_has "can't unpack $hostile/dotdot.tar: entry 'a/../../ch-convert-escape': path leaves the image"
    check_clean out
    [[ ! -e ch-convert-escape && ! -e ../ch-convert-escape ]]
}

@test 'ch-convert: hostile: absolute names land inside the image' {
    run ch-convert "$hostile/absolute.tar" ./out
    assert_status 0
    assert_output_has '1 entry had an absolute name; made relative to the image root'
    [[ -f out/ch-convert-absolute-test/file ]]
    [[ ! -e /ch-convert-absolute-test ]]
}

@test 'ch-convert: hostile: a symlink, then a write through it, stays inside' {
    mkdir outside
    python3 - "$BATS_TEST_TMPDIR" <<'EOF'
import io, sys, tarfile
tmp = sys.argv[1]
def link(name, target):
    ti = tarfile.TarInfo(name); ti.type = tarfile.SYMTYPE; ti.linkname = target
    return ti
def file(name, data):
    ti = tarfile.TarInfo(name); ti.size = len(data)
    return ti, io.BytesIO(data)
with tarfile.open(tmp + "/evil.tar", "w") as t:
    t.addfile(link("escape", tmp + "/outside"))
    t.addfile(*file("escape/pwned", b"gotcha\n"))
    t.addfile(link("up", "../../../../../../../../../../.." + tmp + "/outside"))
    t.addfile(*file("up/pwned2", b"gotcha\n"))
EOF
    run ch-convert evil.tar ./out
    assert_status 0
    assert_empty_dir outside                       # the sentinel: nothing outside
    [[ $(cat "out/$BATS_TEST_TMPDIR/outside/pwned") == gotcha ]]
    [[ $(cat "out/$BATS_TEST_TMPDIR/outside/pwned2") == gotcha ]]
    [[ $(readlink out/escape) == "$BATS_TEST_TMPDIR/outside" ]]   # kept verbatim
    # and converting the result again still never follows the link
    run ch-convert ./out again.tar
    assert_status 0
    assert_empty_dir outside
}

@test 'ch-convert: hostile: a hard link to a host file' {
    run ch-convert "$hostile/hardlink-host.tar" ./out
    assert_status 31
    assert_output_has "entry 'passwd': hard link target '/etc/passwd' is not an earlier entry of the image"
    check_clean out
}

@test 'ch-convert: hostile: device nodes are dropped' {
    run ch-convert "$hostile/devices.tar" ./out
    assert_status 0
    assert_output_has 'dropped 2 device file(s), FIFO(s) or socket(s): not allowed in images'
    assert_empty_dir out/dev
    [[ -f out/ok ]]
}

@test 'ch-convert: hostile: a FIFO is dropped' {
    run ch-convert "$hostile/fifo.tar" ./out
    assert_status 0
    assert_output_has 'dropped 1 device file(s), FIFO(s) or socket(s)'
    [[ ! -e out/fifo && -f out/ok ]]
}

@test 'ch-convert: hostile: setuid and setgid bits are stripped' {
    run ch-convert "$hostile/setuid.tar" ./out
    assert_status 0
    [[ $(stat -c %a out/suid) == 755 ]]
    [[ $(stat -c %a out/sgid) == 755 ]]
    [[ $(stat -c %a out/sgiddir) == 775 ]]
    # and from a directory source too
    mkdir in
    touch in/s
    chmod 4755 in/s
    run ch-convert ./in s.tar
    assert_status 0
    tar tvf s.tar | grep -E '^-rwxr-xr-x .* s$'
}

@test 'ch-convert: hostile: a truncated archive' {
    run ch-convert "$hostile/truncated.tar" ./out
    assert_status 31
    assert_output_has "can't read $hostile/truncated.tar: entry 'big': "
    check_clean out
}

@test 'ch-convert: hostile: a truncated compressed stream' {
    run ch-convert "$hostile/truncated.tar.gz" ./out
    assert_status 31
    assert_output_has "can't read $hostile/truncated.tar.gz: entry 'big': truncated gzip input"
    check_clean out
}

@test 'ch-convert: hostile: garbage named .tar.gz' {
    run ch-convert "$hostile/garbage.tar.gz" ./out
    assert_status 31
    assert_output_has "can't read $hostile/garbage.tar.gz: not a tar archive"
    check_clean out
}

@test 'ch-convert: hostile: names with newlines and escapes are printed escaped' {
    run ch-convert "$hostile/newline-dotdot.tar" ./out
    assert_status 31
    assert_output_has "entry 'evil\\nname/../../x': path leaves the image"
    [[ ${#lines[@]} -eq 1 ]]   # no raw newline from the name
    check_clean out
    run ch-convert "$hostile/newline.tar" ./out
    assert_status 0
    [[ -f out/$'new\nline' && -f out/$'esc\e[31mred' ]]
}

@test 'ch-convert: hostile: whiteouts in a single archive remove nothing and are not written' {
    run ch-convert -v "$hostile/whiteout.tar" ./out
    assert_status 0
    assert_output_has 'dropped 3 whiteout markers (0 removed entries of earlier layers)'
    [[ -f out/etc/keep ]]
    [[ -z $(find out -name '.wh.*') ]]
}

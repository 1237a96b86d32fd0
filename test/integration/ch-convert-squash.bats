# ch-convert-squash.bats: ch-convert's SquashFS output options (compressor,
# block size), checked against what unsquashfs says of the result, and every
# writable format chosen both by OUT's name and by -o. Bad option values must
# exit 64 with a message naming the option, and leave nothing behind.
load common

setup() {
    cd "$BATS_TEST_TMPDIR" || return 1
}

teardown() {
    chmod -R u+rwX "$BATS_TEST_TMPDIR" 2>/dev/null || true
}

# tree DIR: one line per entry (path, type, mode, size or target), sorted.
tree() {
    (cd "$1" && find . -mindepth 1 \
        \( -type d -printf '%P|d|%m\n' \) -o \
        \( -type l -printf '%P|l|%l\n' \) -o \
        \( -type f -printf '%P|f|%m|%s\n' \) | LC_ALL=C sort)
}

# make_in: ./in, with files of several sizes (data blocks and fragments at
# any block size from 4K to 1M), compressible and not, a symlink, a hard
# link, an empty file, and the mount points ch-convert adds to unpacked
# tarballs.
make_in() {
    mkdir -p in/a/b in/empty
    seq 1 200000 > in/a/numbers                            # ~1.2 MiB, compressible
    head -c 3000000 /dev/urandom > in/a/random             # incompressible, > 2 blocks of 1M
    head -c 5000 /dev/urandom > in/a/b/small
    printf 'hi\n' > in/a/b/tiny
    : > in/a/b/zero
    ln -s ../a/numbers in/empty/link
    ln in/a/b/tiny in/hard
    # what unpacking from a tarball adds to an image (unpack_init), so that
    # round trips through tar compare equal
    mkdir -p in/{bin,ch,dev,etc,proc,sys,tmp,usr} in/mnt/{0..9}
    touch in/etc/{hosts,resolv.conf}
}

# same_as_in DIR: DIR holds what ./in holds.
same_as_in() {
    diff -u <(tree in) <(tree "$1")
    cmp in/a/numbers "$1/a/numbers"
    cmp in/a/random "$1/a/random"
    cmp in/a/b/small "$1/a/b/small"
}

# superblock FILE: unsquashfs's "Compression NAME" and "Block size N" lines.
superblock() {
    unsquashfs -s "$1" | grep -E '^(Compression|Block size) '
}

need_unsquashfs() {
    command -v unsquashfs > /dev/null || skip_env 'unsquashfs (squashfs-tools) not installed'
}

@test 'ch-convert squash: --help names the SquashFS options and the compressors' {
    run ch-convert --help
    assert_status 0
    assert_output_has '--squash-comp=NAME'
    assert_output_has '--squash-block-size=SIZE'
    assert_output_has 'SquashFS compressor: gzip, '
    for c in zstd xz lz4; do
        [[ $(grep -e '--squash-comp' <<< "$output") == *" $c"[,\ ]* ]] || { echo "no $c in --help" >&2; return 1; }
    done
    assert_output_lacks 'lzma'
}

@test 'ch-convert squash: every compressor and block size form, per unsquashfs, round trip equal' {
    need_unsquashfs
    make_in
    # compressor, block size as given, in bytes
    while read -r comp size bytes; do
        run ch-convert --squash-comp "$comp" --squash-block-size "$size" ./in "$comp-$size.sqfs"
        assert_status 0
        run superblock "$comp-$size.sqfs"
        assert_line_is 0 "Compression $comp"
        assert_line_is 1 "Block size $bytes"
        # through another reader (squashfs-tools) and through ours
        unsquashfs -no-progress -d "u-$comp-$size" "$comp-$size.sqfs" > /dev/null
        same_as_in "u-$comp-$size"
        run ch-convert "$comp-$size.sqfs" "./o-$comp-$size"
        assert_status 0
        same_as_in "o-$comp-$size"
    done <<'EOF'
gzip 65536 65536
gzip 4K 4096
gzip 1M 1048576
zstd 1m 1048576
zstd 128KiB 131072
xz 64k 65536
lz4 8K 8192
EOF
}

@test 'ch-convert squash: the default is gzip in 128K blocks; the = forms work too' {
    need_unsquashfs
    make_in
    run ch-convert ./in default.sqfs
    assert_status 0
    run superblock default.sqfs
    assert_line_is 0 'Compression gzip'
    assert_line_is 1 'Block size 131072'
    # libdeflate's level 7, recorded as mksquashfs records a level (man page)
    run unsquashfs -s default.sqfs
    assert_output_has 'compression-level 7'
    run ch-convert --squash-comp=zstd --squash-block-size=32K ./in eq.sqfs
    assert_status 0
    run superblock eq.sqfs
    assert_line_is 0 'Compression zstd'
    assert_line_is 1 'Block size 32768'
    # given twice, the last one counts (as argp does)
    run ch-convert --squash-comp=xz --squash-comp=gzip ./in twice.sqfs
    assert_status 0
    run superblock twice.sqfs
    assert_line_is 0 'Compression gzip'
}

@test 'ch-convert squash: same input, same options: the same bytes' {
    make_in
    for opts in '' '--squash-comp=zstd --squash-block-size=1M' '--squash-block-size=4K'; do
        # shellcheck disable=SC2086 # word splitting of opts is meant
        ch-convert $opts ./in one.sqfs
        # shellcheck disable=SC2086
        ch-convert $opts ./in two.sqfs
        cmp one.sqfs two.sqfs
        rm one.sqfs two.sqfs
    done
}

@test 'ch-convert squash: gzip output is plain zlib, compressed, and smaller than its input' {
    need_unsquashfs
    make_in
    run ch-convert ./in g.sqfs
    assert_status 0
    # numbers compresses ~5x; raw storage would show as a file as big as the input
    (($(stat -c %s g.sqfs) < 3000000 + 1200000 * 2 / 3))
    # squashfs-tools reads it with zlib: every block inflates and checks out
    run unsquashfs -no-progress -d viazlib g.sqfs
    assert_status 0
    same_as_in viazlib
}

@test 'ch-convert squash: bad compressor names exit 64 and leave nothing' {
    make_in
    run ch-convert --squash-comp foo ./in out.sqfs
    assert_status 64
    assert_output_has "--squash-comp: unknown compressor 'foo' (it can with: gzip, "
    assert_output_has "see 'ch-convert --help'"
    check_clean out.sqfs
    run ch-convert --squash-comp lzma ./in out.sqfs
    assert_status 64
    assert_output_has "--squash-comp: this build can't compress with 'lzma'"
    check_clean out.sqfs
    run ch-convert --squash-comp GZIP ./in out.sqfs
    assert_status 64
    assert_output_has "unknown compressor 'GZIP'"
    check_clean out.sqfs
    run ch-convert --squash-comp= ./in out.sqfs
    assert_status 64
    check_clean out.sqfs
    run ch-convert --squash-comp
    assert_status 64
    assert_output_has "option '--squash-comp' requires an argument"
}

@test 'ch-convert squash: bad block sizes exit 64 and leave nothing' {
    make_in
    for bad in 3000 2K 2M 0 1023K 2048M 99999999999999999999; do
        run ch-convert --squash-block-size "$bad" ./in out.sqfs
        assert_status 64
        assert_output_has "--squash-block-size: invalid block size $bad (a power of two from 4K (4096) to 1M (1048576))"
        check_clean out.sqfs
    done
    for bad in abc 64X 64KB 1G 1.5M K -4096 ' 4096' 0x1000; do
        run ch-convert "--squash-block-size=$bad" ./in out.sqfs
        assert_status 64
        assert_output_has "--squash-block-size: '$bad' is not a size (write it as 65536, 64K or 1M)"
        check_clean out.sqfs
    done
    # -n checks them as well
    run ch-convert -n --squash-block-size 3000 ./in out.sqfs
    assert_status 64
    assert_output_has 'invalid block size 3000'
}

@test 'ch-convert squash: SquashFS options for other output are refused' {
    make_in
    run ch-convert --squash-comp zstd ./in out.tar.gz
    assert_status 64
    assert_output_has '--squash-comp and --squash-block-size are for squash output, and out.tar.gz is tar'
    check_clean out.tar.gz
    ch-convert ./in in.tar
    run ch-convert --squash-block-size 64K -o dir in.tar outdir
    assert_status 64
    assert_output_has 'outdir is dir'
    check_clean outdir
}

# out_is FILE FORMAT: FILE's content is of FORMAT, by its magic bytes.
out_is() {
    local magic
    magic=$(head -c 6 "$1" | od -An -tx1 | tr -d ' \n')
    case $2 in
        squash)  [[ $magic == 68737173* ]] ;;          # hsqs
        tar.gz)  [[ $magic == 1f8b* ]] ;;
        tar.zst) [[ $magic == 28b52ffd* ]] ;;
        tar.xz)  [[ $magic == fd377a585a00 ]] ;;
        tar)     [[ $(dd if="$1" bs=1 skip=257 count=5 status=none) == ustar ]] ;;
        *) return 1 ;;
    esac || { echo "$1 is not $2 (starts with $magic)" >&2; return 1; }
}

@test 'ch-convert squash: every writable format by OUT name, and back' {
    make_in
    # name, format it must be
    while read -r name fmt; do
        run ch-convert ./in "$name"
        assert_status 0
        out_is "$name" "$fmt"
        run ch-convert "$name" "./back-${name//./-}"
        assert_status 0
        same_as_in "back-${name//./-}"
    done <<'EOF'
x.sqfs squash
x.squash squash
x.squashfs squash
x.squishy squash
x.tar tar
x.tar.gz tar.gz
x.tgz tar.gz
x.tar.zst tar.zst
x.tar.xz tar.xz
EOF
    run ch-convert x.sqfs ./dir-by-name
    assert_status 0
    same_as_in dir-by-name
    run ch-convert x.sqfs img-by-name
    assert_status 0
    same_as_in "$CH_IMAGE_STORAGE/img/img-by-name"
}

@test 'ch-convert squash: every writable format by -o, whatever the name' {
    make_in
    # -o argument, output name (which says nothing, or something else), format
    while read -r fmt name want; do
        run ch-convert -o "$fmt" ./in "$name"
        assert_status 0
        out_is "$name" "$want"
        run ch-convert "$name" "./back-${name//./-}"
        assert_status 0
        same_as_in "back-${name//./-}"
    done <<'EOF'
squash out-squash.img squash
squash out-squash.tar squash
tar out-tar.img tar
tar out-tar.tar.xz tar.xz
tar.gz out-targz.img tar.gz
tgz out-tgz.img tar.gz
tar.zst out-tarzst.img tar.zst
tar.zst out-tarzst.tar.gz tar.zst
tar.xz out-tarxz.img tar.xz
EOF
    run ch-convert -o dir out-squash.img dir-by-option
    assert_status 0
    same_as_in dir-by-option
    run ch-convert -o ch-image ./in img.tar
    assert_status 0
    same_as_in "$CH_IMAGE_STORAGE/img/img.tar"
    check_clean img.tar
    run ch-convert -n -o tar.gz ./in out.bin
    assert_line_is 0 'would convert ./in (dir) to out.bin (tar)'
}

@test 'ch-convert squash: -o refuses unknown formats and unwritable tar names' {
    make_in
    run ch-convert -o tar.bz2 ./in out.img
    assert_status 64
    assert_output_has "--out-fmt: unknown format 'tar.bz2' (known: ch-image, dir, squash, tar, tar.gz, tgz, tar.zst, tar.xz)"
    check_clean out.img
    run ch-convert -o x.tar.gz ./in out.img    # a format, not a file name
    assert_status 64
    assert_output_has "--out-fmt: unknown format 'x.tar.gz'"
    check_clean out.img
    run ch-convert -o tar ./in out.tar.bz2
    assert_status 64
    assert_output_has "can't choose a tar compression for out.tar.bz2"
    assert_output_has 'or give one with -o (tar.gz, tar.zst, tar.xz)'
    check_clean out.tar.bz2
}

# ch-convert-hostile.bats: archives and trees built to exhaust memory, the
# stack or descriptors. Each is built here, at test time, with python3's
# tarfile (or mkdir), and must be refused quickly, in bounded memory
# (/usr/bin/time -f %M), with one clear line naming the entry (shortened
# when long), leaving nothing behind. The limits are in ch-convert(1),
# LIMITS; the SquashFS reader's own are tested with it.
load common

# Every refusal here stays well under the documented base (64 MiB).
rss_limit_kb=65536

setup() {
    cd "$BATS_TEST_TMPDIR" || return 1
    command -v /usr/bin/time > /dev/null || skip_env '/usr/bin/time (package time) not installed'
}

teardown() {
    chmod -R u+rwX "$BATS_TEST_TMPDIR" 2>/dev/null || true
    [[ -z ${foreign_dir:-} ]] || rm -rf "$foreign_dir"
}

# convert_measured ARG...: run ch-convert under /usr/bin/time; sets status
# and output (ch-convert's own stderr) as `run` does, and rss_kb, secs.
convert_measured() {
    run /usr/bin/time -f 'measured %M %e' -o "$BATS_TEST_TMPDIR/time.out" "$ch_bin/ch-convert" "$@"
    local line
    line=$(grep '^measured ' "$BATS_TEST_TMPDIR/time.out")
    read -r _ rss_kb secs <<< "$line"
    echo "ch-convert $*: exit $status, ${rss_kb} KiB, ${secs} s" >&2
}

# refused_quickly OUT MESSAGE: the last convert_measured failed (31) with
# one short line containing MESSAGE, quickly, in bounded memory, leaving
# nothing at OUT.
refused_quickly() {
    assert_status 31
    assert_output_has "$2"
    [[ ${#lines[@]} -eq 1 ]] || { echo "expected one line" >&2; return 1; }
    ((${#output} < 600)) || { echo "message of ${#output} bytes" >&2; return 1; }
    ((rss_kb < rss_limit_kb)) || { echo "RSS $rss_kb KiB >= $rss_limit_kb" >&2; return 1; }
    awk -v s="$secs" 'BEGIN { exit !(s < 10) }' || { echo "took $secs s" >&2; return 1; }
    check_clean "$1"
}

# tar_of FILE PYTHON: write FILE with python3's tarfile; PYTHON is the body
# of a function given t (an open pax TarFile) and the helpers f(name,
# data) and d(name).
tar_of() {
    python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
def add(t, name, type=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.mtime = 1700000000
    for k, v in kw.items():
        setattr(ti, k, v)
    if type == tarfile.REGTYPE:
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    else:
        t.addfile(ti)
mode = "w:gz" if sys.argv[1].endswith(".gz") else "w"
with tarfile.open(sys.argv[1], mode, format=tarfile.PAX_FORMAT) as t:
    f = lambda name, data=b"x\n", **kw: add(t, name, tarfile.REGTYPE, data, **kw)
    d = lambda name, **kw: add(t, name, tarfile.DIRTYPE, **kw)
    exec(sys.argv[2])
PY
}

@test 'ch-convert: hostile: one name of 20 000 components is refused at once, shortened' {
    tar_of deep.tar.gz 'f("a/" * 20000 + "f")'
    (($(stat -c %s deep.tar.gz) < 60000))
    for out in ./out out.sqfs; do
        convert_measured deep.tar.gz "$out"
        refused_quickly "$out" "ch-convert: can't unpack deep.tar.gz: entry 'a/a/a/a/"
        assert_output_has "/a/f' (40001 bytes): path is more than 1024 components deep"
    done
}

@test 'ch-convert: hostile: a tree 1025 directories deep is refused; 1024 is fine' {
    tar_of deep.tar 'p = ""
for i in range(1025):
    p += ("/" if p else "") + "d"
    d(p)
f(p + "/leaf")'
    for out in ./out out.sqfs; do
        convert_measured deep.tar "$out"
        refused_quickly "$out" "path is more than 1024 components deep"
        assert_output_has "ch-convert: can't unpack deep.tar: entry 'd/d/d/d/"
    done
    # One level less converts, to a directory and to SquashFS and back: no
    # recursion, and one open descriptor per level is allowed for.
    tar_of ok.tar 'p = "/".join(["d"] * 1023)
d("d")
f(p + "/leaf", b"deep\n")'
    convert_measured ok.tar ./ok
    assert_status 0
    [[ $(find ok -name leaf -exec cat {} +) == deep ]]
    convert_measured ./ok ok.sqfs
    assert_status 0
    convert_measured ok.sqfs back.tar.zst
    assert_status 0
    [[ $(zstd -dc back.tar.zst | tar tf - | grep -c '/leaf$') -eq 1 ]]
}

@test 'ch-convert: hostile: a directory tree 1025 deep is refused as input' {
    mkdir -p "in/$(printf 'd/%.0s' {1..1025})"
    convert_measured ./in out.tar.gz
    refused_quickly out.tar.gz "ch-convert: can't unpack ./in: entry 'd/d/d/"
    assert_output_has "(2049 bytes): path is more than 1024 components deep"
}

@test 'ch-convert: hostile: a path of 4097 bytes is refused; 4096 is fine' {
    # 20 components of 200 bytes and one to make up the size; a second
    # top-level name, so that "aaa..." is not taken for a tarbomb's wrapper
    tar_of long.tar 'base = "/".join([c * 200 for c in "abcdefghijklmnopqrst"]) + "/"
f(base + "u" * (4096 - len(base)), b"ok\n")
f("top")'
    convert_measured long.tar ./out
    assert_status 0
    tar_of longer.tar 'base = "/".join([c * 200 for c in "abcdefghijklmnopqrst"]) + "/"
f(base + "u" * (4097 - len(base)))
f("top")'
    convert_measured longer.tar ./out2
    refused_quickly ./out2 "(4097 bytes): path is longer than 4096 bytes"
    assert_output_has "ch-convert: can't unpack longer.tar: entry 'aaaa"
    tar_of longname.tar 'f("dir/" + "n" * 256)'
    convert_measured longname.tar ./out3
    refused_quickly ./out3 "entry 'dir/nnnn"
    assert_output_has "path is made of a name longer than 255 bytes"
}

@test 'ch-convert: hostile: huge or many extended attributes are refused' {
    tar_of big.tar.gz 'f("f", pax_headers={"SCHILY.xattr.user.big": "v" * (200 * 1024)})'
    convert_measured big.tar.gz ./out
    refused_quickly ./out "ch-convert: can't read big.tar.gz: entry 'f': extended attributes take more than 65536 bytes"
    tar_of many.tar.gz 'f("f", pax_headers={"SCHILY.xattr.user.%d" % i: "" for i in range(1025)})'
    convert_measured many.tar.gz out.sqfs
    refused_quickly out.sqfs "entry 'f': more than 1024 extended attributes"
    # 64 MiB in one pax record: libarchive refuses it before we see it.
    tar_of huge.tar.gz 'f("f", pax_headers={"SCHILY.xattr.user.huge": "v" * (64 * 1024 * 1024)})'
    convert_measured huge.tar.gz ./out
    assert_status 31
    ((rss_kb < rss_limit_kb))
    check_clean ./out
    # At the limit is fine (names and values: 8 + 65528 bytes).
    tar_of max.tar 'f("f", pax_headers={"SCHILY.xattr.user.max": "v" * (65536 - 8)})'
    convert_measured max.tar ./out4
    assert_status 0
}

@test 'ch-convert: hostile: symlinks can not stretch a path past the limits' {
    tar_of stretch.tar 'b = "/".join(["b"] * 600)
f(b + "/x")
add(t, "a", tarfile.SYMTYPE, linkname=b)
add(t, b + "/a", tarfile.SYMTYPE, linkname=b)
f("a/a/f")'
    convert_measured stretch.tar ./out
    refused_quickly ./out "entry 'a/a/f': path resolves (through symlinks) to one more than 1024 components deep"
}

@test 'ch-convert: memory stays under the documented bound for 20 000 entries' {
    # ch-convert(1): 64 MiB plus 2 KiB per entry (implied directories count).
    tar_of many.tar.gz 'for i in range(200):
    for j in range(100):
        f("d%03d/%s%05d" % (i, "n" * 200, j), b"")'
    local bound=$((65536 + 2 * 20200))
    for out in out.sqfs ./out; do
        convert_measured many.tar.gz "$out"
        assert_status 0
        ((rss_kb < bound)) || { echo "RSS $rss_kb KiB over the bound $bound KiB" >&2; return 1; }
    done
}

@test 'ch-convert: the sweep skips the staging directory of another user beside OUT' {
    only_root
    id chtest > /dev/null 2>&1 || skip_env 'no user chtest'
    foreign_dir=$(mktemp -d /tmp/ch-convert-foreign.XXXXXX)
    chmod 1777 "$foreign_dir"
    # chtest plants debris named like ours, unlocked, read-only, and a
    # symlink named like ours pointing at a file of root's.
    runuser -u chtest -- mkdir -p "$foreign_dir/.out.ch-staging.1.1/sub"
    runuser -u chtest -- touch "$foreign_dir/.out.ch-staging.1.1/sub/f"
    runuser -u chtest -- chmod 0500 "$foreign_dir/.out.ch-staging.1.1/sub" "$foreign_dir/.out.ch-staging.1.1"
    printf 'root\n' > "$foreign_dir/root-file"
    chmod 0600 "$foreign_dir/root-file"
    runuser -u chtest -- ln -s "$foreign_dir/root-file" "$foreign_dir/.out.ch-staging.1.2"
    mkdir in
    touch in/f
    run ch-convert -v ./in "$foreign_dir/out.tar.gz"
    assert_status 0
    [[ -e $foreign_dir/out.tar.gz ]]
    [[ -e $foreign_dir/.out.ch-staging.1.1/sub/f ]]
    [[ $(stat -c '%a %U' "$foreign_dir/.out.ch-staging.1.1") == '500 chtest' ]]
    [[ $(stat -c '%a %U' "$foreign_dir/.out.ch-staging.1.1/sub") == '500 chtest' ]]
    [[ -L $foreign_dir/.out.ch-staging.1.2 ]]
    [[ $(stat -c %a "$foreign_dir/root-file") == 600 ]]
    # Root's own debris beside it is swept.
    mkdir -p "$foreign_dir/.out.ch-staging.2.1/ro"
    chmod 0500 "$foreign_dir/.out.ch-staging.2.1/ro"
    run ch-convert ./in "$foreign_dir/out.tar.gz"
    assert_status 0
    [[ ! -e $foreign_dir/.out.ch-staging.2.1 ]]
    [[ -e $foreign_dir/.out.ch-staging.1.1/sub/f ]]
}

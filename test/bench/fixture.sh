# fixture.sh: the image that the SquashFS and conversion benchmarks share,
# sourced by them after lib.sh (it is not a benchmark itself). Built once per
# run in the work area, on tmpfs, by whichever benchmark needs it first; the
# others reuse it, and so do their derived files (SquashFS, tar.gz).
#
# The image is "Debian minbase plus many small files", about 300 MiB in about
# 30 000 regular files:
#   1. Debian's minbase, made once with debootstrap (as root, from the network)
#      and cached as a tarball written by our ch-convert, so later runs need
#      neither; package lists and downloaded packages are removed first, as
#      Debian's container images ship. Without root, network or debootstrap
#      (or with CH_BENCH_MINBASE=host), a stand-in is copied from this host
#      instead: a few programs with their libraries, and /usr/share/doc. The
#      block printed says which.
#   2. An empty /dev, as container images have it (ch-run binds the host's),
#      and empty mount points mnt/0..9 and etc/hosts, which Charliecloud's
#      ch-convert adds when it unpacks: then both tools write the same tree
#      (Charliecloud's leaves out whatever is under /dev).
#   3. Small files of 1-8 KiB up to the file count, then a few larger ones
#      (4-24 MiB) up to the size, from mkfiles.c: mixed text, record and
#      random content, the same bytes every run (fixed seed).
#   4. Everything readable by everyone (chmod -R a+rX), so the unprivileged
#      pass can read the whole tree.
#
# Environment (all optional):
#   CH_BENCH_CACHE    where the minbase tarball is kept (default
#                     /var/tmp/ch-bench-cache; on disk, written once)
#   CH_BENCH_MINBASE  "debootstrap" (default) or "host" (the stand-in)
#   CH_BENCH_SUITE, CH_BENCH_MIRROR  what debootstrap installs and from where
#                     (default bookworm, http://deb.debian.org/debian)
#   CH_BENCH_FIXTURE_MIB, CH_BENCH_FIXTURE_FILES  the targets (300, 30000)
# shellcheck shell=bash
# shellcheck disable=SC2154 # bench_top and friends come from lib.sh

fixture_dir=$CH_BENCH_DIR/fixture
fixture_img=$fixture_dir/img
fixture_seed=20240101
fixture_convert=$bench_top/bin/ch-convert
CH_BENCH_CACHE=${CH_BENCH_CACHE:-/var/tmp/ch-bench-cache}
CH_BENCH_MINBASE=${CH_BENCH_MINBASE:-debootstrap}
CH_BENCH_SUITE=${CH_BENCH_SUITE:-bookworm}
CH_BENCH_MIRROR=${CH_BENCH_MIRROR:-http://deb.debian.org/debian}
CH_BENCH_FIXTURE_MIB=${CH_BENCH_FIXTURE_MIB:-300}
CH_BENCH_FIXTURE_FILES=${CH_BENCH_FIXTURE_FILES:-30000}

# bench_fixture: build the fixture if this run has not yet, printing a block
# that says what it is; set fixture_info to its one-line description. Call it
# directly, not in $(...): it exits on failure.
fixture_info=
bench_fixture() {
    if [[ ! -f $fixture_dir/info ]]; then
        [[ -x $fixture_convert ]] || bench_die "$fixture_convert not found (run make first)"
        bench_header "fixture: Debian minbase plus many small files, in $fixture_img"
        rm -rf "$fixture_dir"
        mkdir -p "$fixture_dir"
        chmod 0755 "$fixture_dir"
        local t0=$SECONDS
        fixture_build || bench_die "can't build the fixture"
        echo "  $(cat "$fixture_dir/info")"
        echo "  built in $((SECONDS - t0)) s"
    fi
    # shellcheck disable=SC2034 # for the benchmarks that source this
    fixture_info=$(cat "$fixture_dir/info")
}

# bench_fixture_sqfs: the fixture as a SquashFS file made by our ch-convert
# (default options), once per run; prints its path. squashfs.sh leaves one.
bench_fixture_sqfs() {
    local out=$fixture_dir/img.sqfs
    if [[ ! -f $out ]]; then
        "$fixture_convert" -q "$fixture_img" "$out" || bench_die "can't make $out"
        chmod 0644 "$out"
    fi
    echo "$out"
}

# bench_fixture_tgz: the fixture as a tar.gz made by our ch-convert, once per
# run; prints its path.
bench_fixture_tgz() {
    local out=$fixture_dir/img.tar.gz
    if [[ ! -f $out ]]; then
        "$fixture_convert" -q "$fixture_img" "$out" || bench_die "can't make $out"
        chmod 0644 "$out"
    fi
    echo "$out"
}

# ---- building -------------------------------------------------------------------

fixture_build() {
    local cache=$CH_BENCH_CACHE/minbase-$CH_BENCH_SUITE.tar.zst origin
    if [[ $CH_BENCH_MINBASE == debootstrap && ! -f $cache ]]; then
        fixture_debootstrap "$cache" || true
    fi
    if [[ $CH_BENCH_MINBASE == debootstrap && -f $cache ]]; then
        "$fixture_convert" -q "$cache" "$fixture_img" || return 1
        origin="Debian $CH_BENCH_SUITE minbase (debootstrap, cached in $cache)"
    else
        echo "  FALLBACK: no Debian minbase; copying a stand-in from this host's /usr instead"
        fixture_from_host "$fixture_img" || return 1
        origin="FALLBACK stand-in from this host (programs, their libraries, /usr/share/doc), not Debian minbase"
    fi

    # As Charliecloud's tar-to-dir conversion leaves and adds them (see
    # convert.sh).
    mkdir -p "$fixture_img/dev"
    find "$fixture_img/dev" -mindepth 1 -delete
    mkdir -p "$fixture_img"/mnt/{0,1,2,3,4,5,6,7,8,9} "$fixture_img/etc"
    [[ -e $fixture_img/etc/hosts || -L $fixture_img/etc/hosts ]] || : >"$fixture_img/etc/hosts"
    [[ -e $fixture_img/etc/resolv.conf || -L $fixture_img/etc/resolv.conf ]] \
        || : >"$fixture_img/etc/resolv.conf"

    local mkfiles base_files base_bytes small large=(0 0) rest
    mkfiles=$(bench_compile mkfiles)
    base_files=$(find "$fixture_img" -type f | wc -l)
    base_bytes=$(du -s --apparent-size -B1 "$fixture_img" | cut -f1)
    # Leave room for the few large files (about 6) in the file count.
    local n=$((CH_BENCH_FIXTURE_FILES - base_files - 6))
    ((n >= 1000)) || n=1000
    mkdir -p "$fixture_img/opt/bench"
    read -r -a small < <("$mkfiles" small "$fixture_img/opt/bench/small" "$fixture_seed" "$n" 1024 8192) \
        || return 1
    rest=$((CH_BENCH_FIXTURE_MIB * 1048576 - base_bytes - small[1]))
    if ((rest >= 4 * 1048576)); then
        read -r -a large < <("$mkfiles" large "$fixture_img/opt/bench/large" "$fixture_seed" "$rest" \
                                 $((4 * 1048576)) $((24 * 1048576))) || return 1
    fi
    chmod -R a+rX "$fixture_img"

    # Both ch-runs must be able to run it.
    [[ -x $fixture_img/bin/true && -x $fixture_img/bin/cat ]] \
        || { echo "  $fixture_img has no /bin/true or /bin/cat"; return 1; }

    local files entries mib
    files=$(find "$fixture_img" -type f | wc -l)
    entries=$(find "$fixture_img" | wc -l)
    mib=$(du -s --apparent-size -m "$fixture_img" | cut -f1)
    bench_fmt '%s + %d small files (%.1f MiB) + %d large (%.1f MiB): %d MiB, %d files, %d entries\n' \
        "$origin" "${small[0]}" "$(bench_mib "${small[1]}")" "${large[0]}" "$(bench_mib "${large[1]}")" \
        "$mib" "$files" "$entries" >"$fixture_dir/info"
}

bench_mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# fixture_debootstrap CACHE: debootstrap minbase on tmpfs, trim it and write
# it to CACHE with our ch-convert. Says why and returns 1 if it can't.
fixture_debootstrap() {
    local cache=$1 tmp=$CH_BENCH_DIR/debootstrap log=$CH_BENCH_DIR/debootstrap.log t0
    if [[ $(id -u) -ne 0 ]]; then
        echo "  can't debootstrap: not root (run make bench as root once to fill $cache)"
        return 1
    fi
    command -v debootstrap >/dev/null || { echo "  can't debootstrap: debootstrap not installed"; return 1; }
    echo "  debootstrap --variant=minbase $CH_BENCH_SUITE (once; cached as $cache) ..."
    t0=$SECONDS
    if ! debootstrap --variant=minbase "$CH_BENCH_SUITE" "$tmp" "$CH_BENCH_MIRROR" >"$log" 2>&1; then
        echo "  debootstrap failed (offline?); the end of its log:"
        tail -n 5 "$log" | bench_indent
        rm -rf --one-file-system "$tmp"
        return 1
    fi
    # As Debian's container images ship: no package lists, no .deb files.
    rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/cache/apt/*.bin
    mkdir -p "$(dirname "$cache")"
    # -qq: the device files debootstrap made are dropped, with a warning.
    if ! "$fixture_convert" -qq "$tmp" "$cache"; then
        rm -rf --one-file-system "$tmp"
        return 1
    fi
    rm -rf --one-file-system "$tmp"
    echo "  debootstrap and caching took $((SECONDS - t0)) s ($(du -m "$cache" | cut -f1) MiB cached)"
}

# fixture_from_host DIR: a small runnable tree from this host: merged-/usr
# links, a few programs and the libraries ldd names for them, and
# /usr/share/doc for many small files of real text.
fixture_from_host() {
    local dir=$1 prog path lib
    mkdir -p "$dir"/{usr/bin,usr/lib,usr/lib64,usr/share,etc,dev,proc,sys,tmp,mnt,home,root,var/tmp} || return 1
    ln -s usr/bin "$dir/bin"
    ln -s usr/bin "$dir/sbin"
    ln -s usr/lib "$dir/lib"
    ln -s usr/lib64 "$dir/lib64"
    for prog in sh bash true false cat ls env cp mv rm mkdir grep sed sleep id; do
        path=$(type -P "$prog") || continue
        cp -L "$path" "$dir/usr/bin/$prog" || return 1
        for lib in $(ldd "$path" 2>/dev/null | grep -o '/[^ ]*'); do
            lib=${lib#/usr}
            [[ -e $dir/usr$lib ]] && continue
            mkdir -p "$(dirname "$dir/usr$lib")"
            cp -L "$lib" "$dir/usr$lib" 2>/dev/null || cp -L "/usr$lib" "$dir/usr$lib" || return 1
        done
    done
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$dir/etc/passwd"
    printf 'root:x:0:\n' >"$dir/etc/group"
    [[ ! -d /usr/share/doc ]] || cp -a /usr/share/doc "$dir/usr/share/doc" || return 1
}

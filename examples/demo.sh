#!/bin/sh
# demo.sh BINDIR IMAGE: what `make demo` shows: a command run in the embedded
# busybox image by ch-run, as the invoking user, and what the container sees.
set -eu
bindir=$1
image=$2
: "${USER:=$(id -un)}"
export USER
echo "== ch-checkns: can this kernel do what ch-run needs?"
"$bindir/ch-checkns" || echo "(some features are missing; directory images still work if the first line is ok)"
echo
echo "== $bindir/ch-run $image -- sh -c '...'   (as $(id -un), uid $(id -u))"
"$bindir/ch-run" "$image" -- sh -c '
echo "-- id:";       id
echo "-- uid_map:";  cat /proc/self/uid_map
echo "-- gid_map:";  cat /proc/self/gid_map
echo "-- the image is read-only:"
touch /probe 2>&1 || true
echo "-- capabilities:"; grep -E "^Cap(Eff|Bnd)" /proc/self/status
echo "-- mounts:";   cut -d" " -f2,3 /proc/self/mounts | grep -vE "^/(sys|proc)/" | sort -u
echo "-- environment: HOME=$HOME CH_RUNNING=$CH_RUNNING"
'
echo
echo "== done. Try: $bindir/ch-run $image -- sh"

#!/bin/bash
# install.sh: `make install` honours PREFIX and DESTDIR and installs the
# tools, the man pages, the default image and the examples.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
make -s install PREFIX=/opt/chtest DESTDIR="$dest" >/dev/null
status=0
for f in bin/ch-run bin/ch-checkns share/man/man1/ch-run.1 share/man/man1/ch-checkns.1 \
         share/chtools/busybox/bin/busybox share/chtools/examples/slurm/srun.sh \
         share/chtools/examples/mpi/image.sh share/chtools/examples/mpi/mpi_check.c; do
    [[ -e $dest/opt/chtest/$f ]] || { echo "install: missing $f under DESTDIR/PREFIX" >&2; status=1; }
done
for t in bin/ch-*; do
    [[ $t =~ \.(cc|hh)$ ]] && continue
    [[ -x $dest/opt/chtest/$t ]] || { echo "install: $t not installed" >&2; status=1; }
    [[ -f $dest/opt/chtest/share/man/man1/$(basename "$t").1 ]] || { echo "install: no man page for $t" >&2; status=1; }
done
exit $status

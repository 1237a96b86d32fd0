#!/bin/sh
# image.sh OUT.tar: build the MPI example image, Debian 12 minbase with Debian's
# Open MPI (the same 4.1 the host's Debian 12 has, so the host's mpirun and
# Slurm's PMIx plugin can talk to it) and python3, plus /opt/mpi/mpi_check
# compiled inside the image. Needs mmdebstrap and network access to Debian's
# mirror; works as root or, through user namespaces and /etc/subuid, as a user.
# Then: ch-convert OUT.tar DIR, or ch-convert OUT.tar IMG.sqfs.
set -eu
out=${1:?usage: image.sh OUT.tar}
here=$(cd "$(dirname "$0")" && pwd)
mirror=${CH_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# The compiler and headers are installed only to build mpi_check and removed
# again: libopenmpi-dev pulls in gfortran, which would triple the image.
build_deps='gcc libc6-dev libopenmpi-dev'
# --skip=output/dev: no device nodes in the tarball (ch-run binds the host's
# /dev, and ch-convert would drop them with a warning).
mmdebstrap --variant=minbase --mode=auto --quiet --skip=output/dev \
    --include=openmpi-bin,libopenmpi3,python3-minimal,ca-certificates \
    --customize-hook='mkdir -p "$1/opt/mpi"' \
    --customize-hook="copy-in $here/mpi_check.c /opt/mpi" \
    --customize-hook="chroot \"\$1\" apt-get install -y -q --no-install-recommends $build_deps >/dev/null" \
    --customize-hook='chroot "$1" mpicc -O2 -o /opt/mpi/mpi_check /opt/mpi/mpi_check.c' \
    --customize-hook="chroot \"\$1\" apt-get purge -y -q --autoremove $build_deps >/dev/null" \
    --customize-hook='chroot "$1" apt-get clean' \
    bookworm "$out" "$mirror"

#!/bin/bash
# install-deps.sh PROFILE...: make sure the Debian packages a profile needs are
# installed. Profiles: build (compile the tools), test (make check), bench
# (make bench). As root with CH_INSTALL_DEPS=yes, missing packages are installed
# with apt-get; otherwise the exact apt-get line is printed and we stop.
set -euo pipefail

# zlib1g-dev ... libzstd-dev: the static archives of libsquashfs's
# decompressors, which ch-run links in (configure.ac says why). squashfuse
# (test): an independent SquashFS reader the writer's unit tests check against.
declare -A pkgs=(
  [build]="g++ make autoconf automake pkg-config libyaml-cpp-dev libarchive-dev libzstd-dev
           libcurl4-openssl-dev doctest-dev nlohmann-json3-dev libssl-dev libsquashfs-dev
           libdeflate-dev libfuse3-dev busybox-static
           zlib1g-dev liblzma-dev liblz4-dev"
  [test]="bats util-linux passwd procps psmisc attr xz-utils bzip2 zstd gzip squashfs-tools squashfuse fuse3
          binutils shellcheck clang-format python3 libcap2-bin time"
  [bench]="charliecloud charliecloud-runtime squashfs-tools hyperfine time debootstrap strace"
)
# test/fuzz/ (run briefly by check.sh) needs clang and its libFuzzer runtime.
pkgs[test]+=" clang-14 libclang-rt-14-dev"
# The registry fixtures (test/integration/fixtures/registry*) and the pull
# benchmark: real registries, certificates, passwords, pushes, unpacks.
pkgs[test]+=" docker-registry skopeo umoci apache2-utils openssl curl busybox-static"
pkgs[bench]+=" docker-registry skopeo umoci apache2-utils openssl curl python3 zstd busybox-static"
# The Slurm and MPI tests (fixtures/slurm.bash, fixtures/mpi-image.sh) and the
# fan-out and compute benchmarks: a real one-node Slurm (slurm-wlm brings
# slurmctld, slurmd, the clients and slurm-wlm-basic-plugins, which ships the
# mpi_pmix plugin), munge, Debian's Open MPI (mpicc for the compute kernel),
# and mmdebstrap for the MPI image.
slurm_mpi="slurm-wlm munge openmpi-bin libopenmpi-dev mmdebstrap"
pkgs[test]+=" $slurm_mpi"
pkgs[bench]+=" $slurm_mpi"
# ch-fromhost.bats and ch-run-inject.bats inject the host's Open MPI (and
# build their MPI program with its mpicc).
pkgs[test]+=" openmpi-bin libopenmpi-dev"

want=()
for profile in "$@"; do
  [[ -n ${pkgs[$profile]+x} ]] || { echo "install-deps.sh: unknown profile: $profile" >&2; exit 2; }
  # shellcheck disable=SC2206
  want+=(${pkgs[$profile]})
done

if ! command -v dpkg-query >/dev/null; then
  echo "install-deps.sh: not a Debian system; make sure these are installed: ${want[*]}" >&2
  exit 0
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 && ${CH_INSTALL_DEPS:-no} == yes ]]; then
  echo "install-deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have empty package lists; update once if needed.
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
  exit 0
fi
echo "missing Debian packages: ${missing[*]}" >&2
echo "install them with: sudo apt-get install ${missing[*]}" >&2
exit 1

#!/bin/bash
# squash.sh IMAGE.sqfs: the image as one SquashFS file on a shared filesystem
# (/lustre, /scratch, NFS). Each node reads the one file, and mounts it once
# per job step: with --join the first rank on a node starts the FUSE server
# and the others use its mount. Nothing is unpacked on the nodes.
#   ch-convert /var/tmp/mpi /scratch/$USER/mpi.sqfs
#   sbatch examples/slurm/squash.sh /scratch/$USER/mpi.sqfs
#SBATCH --job-name=ch-squash
#SBATCH --ntasks=4
#SBATCH --time=00:05:00
set -euo pipefail
img=${1:?usage: sbatch squash.sh IMAGE.sqfs}
[[ -f $img ]] || { echo "squash.sh: $img is not a SquashFS file" >&2; exit 1; }

srun --mpi=pmix ch-run --join "$img" -- /opt/mpi/mpi_check

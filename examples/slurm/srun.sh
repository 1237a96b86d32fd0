#!/bin/bash
# srun.sh IMAGE: the simplest job: each task starts its own container from
# IMAGE (a directory or a SquashFS file) and runs a command in it.
#   sbatch examples/slurm/srun.sh /var/tmp/mpi
#SBATCH --job-name=ch-srun
#SBATCH --ntasks=4
#SBATCH --time=00:05:00
set -euo pipefail
img=${1:?usage: sbatch srun.sh IMAGE}

# Every task: which task it is, and proof it is inside the image (the image's
# /etc/os-release, not the host's).
srun ch-run "$img" -- sh -c '. /etc/os-release; echo "task $SLURM_PROCID of $SLURM_NTASKS on $(hostname): $PRETTY_NAME"'

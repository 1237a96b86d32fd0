#!/bin/bash
# join.sh IMAGE: an MPI job whose ranks on a node share one container
# (ch-run --join), so Open MPI's shared memory and single-copy transfers work
# between them. The ranks wire up through Slurm's PMIx (--mpi=pmix); the image
# needs an Open MPI built with PMIx, such as examples/mpi's.
#   sbatch examples/slurm/join.sh /var/tmp/mpi
#SBATCH --job-name=ch-join
#SBATCH --ntasks=4
#SBATCH --time=00:05:00
set -euo pipefail
img=${1:?usage: sbatch join.sh IMAGE}

# --join counts this node's tasks from Slurm's variables: no --join-ct needed.
srun --mpi=pmix ch-run --join "$img" -- /opt/mpi/mpi_check

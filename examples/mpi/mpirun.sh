#!/bin/bash
# mpirun.sh IMAGE: the host's mpirun starts the ranks, each in its own
# container; inside an allocation mpirun takes the node list and slot count
# from Slurm. The host's Open MPI and the image's must be the same version
# (Debian 12's 4.1 on both here).
#   sbatch examples/mpi/mpirun.sh /var/tmp/mpi
#SBATCH --job-name=ch-mpirun
#SBATCH --ntasks=4
#SBATCH --time=00:05:00
set -euo pipefail
img=${1:?usage: sbatch mpirun.sh IMAGE}

mpirun -np "${SLURM_NTASKS:-4}" ch-run "$img" -- /opt/mpi/mpi_check

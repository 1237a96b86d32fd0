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

# One container per rank means one user namespace per rank, where Linux's
# cross-memory attach (Open MPI's default for large shared-memory messages)
# can't work: ch-run tells Open MPI so (it sets
# OMPI_MCA_btl_vader_single_copy_mechanism=none unless you did). Shared
# memory itself still works; ch-run --join keeps CMA too (examples/slurm/join.sh).
mpirun -np "${SLURM_NTASKS:-4}" ch-run "$img" -- /opt/mpi/mpi_check

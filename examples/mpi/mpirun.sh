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

# One container per rank means one user namespace per rank, and Linux's
# cross-memory attach (CMA), Open MPI's default for large shared-memory
# messages, doesn't work between user namespaces: say so, or every rank
# prints a warning. Shared memory itself still works (ch-run --join keeps
# CMA too: see examples/slurm/join.sh).
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
mpirun -np "${SLURM_NTASKS:-4}" ch-run "$img" -- /opt/mpi/mpi_check

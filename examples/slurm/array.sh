#!/bin/bash
# array.sh IMAGE: a job array, one small job per input; each array task runs
# its own container and picks its input by SLURM_ARRAY_TASK_ID, which ch-run
# passes into the container with the rest of the environment.
#   sbatch examples/slurm/array.sh /var/tmp/mpi
#SBATCH --job-name=ch-array
#SBATCH --array=0-3
#SBATCH --ntasks=1
#SBATCH --time=00:05:00
#SBATCH --output=ch-array-%A_%a.out
set -euo pipefail
img=${1:?usage: sbatch array.sh IMAGE}

# The "work": the sum of 1..N for N = 1000 * (task id + 1), in the image's
# shell (plain POSIX arithmetic, nothing the image has to install).
srun ch-run "$img" -- sh -c '
n=$((1000 * (SLURM_ARRAY_TASK_ID + 1))); i=1; s=0
while [ $i -le $n ]; do s=$((s + i)); i=$((i + 1)); done
echo "array task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID: sum 1..$n = $s"'

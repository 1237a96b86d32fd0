#!/bin/bash
# job.sh IMAGE [DIR]: run DIR/hello.py (DIR: where the job was submitted
# from) with the image's python3 in every task. The script stays on the host
# and is bound into the container at /mnt/0, so changing it needs no new image.
#   cd examples/python && sbatch job.sh /var/tmp/mpi
#SBATCH --job-name=ch-python
#SBATCH --ntasks=2
#SBATCH --time=00:05:00
set -euo pipefail
img=${1:?usage: sbatch job.sh IMAGE [DIR]}
# Not the script's own directory: sbatch runs a copy from its spool.
dir=${2:-$SLURM_SUBMIT_DIR}
[[ -r $dir/hello.py ]] || { echo "job.sh: no hello.py in $dir" >&2; exit 1; }

srun ch-run -b "$dir:/mnt/0" "$img" -- python3 /mnt/0/hello.py

#!/usr/bin/env python3
"""hello.py: one line per Slurm task from the image's own Python: which task,
on which host, which Python, and a small computation each task checks
(the sum of squares below 10**5 by a loop and by the closed formula)."""
import os
import platform
import socket
import sys

rank = int(os.environ.get("SLURM_PROCID", "0"))
size = int(os.environ.get("SLURM_NTASKS", "1"))
n = 10**5 + rank
loop = sum(i * i for i in range(n))
formula = (n - 1) * n * (2 * n - 1) // 6
status = "ok" if loop == formula else "FAIL"
print(f"python task {rank}/{size} on {socket.gethostname()}: "
      f"Python {platform.python_version()} at {sys.executable}: "
      f"sum of squares below {n} = {loop}: {status}")
sys.exit(0 if status == "ok" else 1)

// cpus.hh: how many CPUs this process may use. The one place that asks, so
// the FUSE server's threads and the SquashFS writer's agree.
#pragma once

namespace ch {

// The CPUs in this process's affinity mask (Slurm, taskset and MPI launchers
// restrict it), not every CPU of the node; at least 1.
unsigned usable_cpus();

} // namespace ch

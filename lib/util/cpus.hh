// cpus.hh: how many CPUs this process may use, and whether the node has one
// to spare. The one place that asks, so the FUSE server's threads and the
// SquashFS writer's agree.
#pragma once

namespace ch {

// The CPUs in this process's affinity mask (Slurm, taskset and MPI launchers
// restrict it), not every CPU of the node; at least 1.
unsigned usable_cpus();

// Whether the node has a CPU to spare for work done beside one other task
// (a guess of what that task will want next), as far as /proc/loadavg's
// count of running tasks against the CPUs online tells; false if it can't
// tell. Both tasks count as running, so one running task more than there
// are CPUs still leaves the guesses a CPU.
bool node_has_idle_cpu();

// The same rule on given numbers (for tests): running tasks, the caller and
// the one it works beside included, against CPUs online.
bool idle_cpu_left(unsigned running, unsigned online);

} // namespace ch

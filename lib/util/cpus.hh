// cpus.hh: how many CPUs this process may use, and whether the node has one
// to spare. The one place that asks, so the FUSE server's threads and the
// SquashFS writer's agree.
#pragma once

#include <sched.h>

namespace ch {

// The CPUs in this process's affinity mask (Slurm, taskset and MPI launchers
// restrict it), not every CPU of the node; at least 1.
unsigned usable_cpus();

// Whether the node has a CPU to spare for work done beside `beside` other
// tasks (a guess of what another task will want next: 1), as far as
// /proc/loadavg's count of running tasks against the CPUs online tells;
// false if it can't tell. The caller and those tasks count as running, so
// `beside` running tasks more than there are CPUs still leave the caller
// one.
bool node_has_idle_cpu(unsigned beside = 1);

// The same rule on given numbers (for tests): running tasks, the caller and
// the ones it works beside included, against CPUs online.
bool idle_cpu_left(unsigned running, unsigned online, unsigned beside = 1);

// While it lives, on a node with no CPU to spare (node_has_idle_cpu(0)),
// this process may run only on the CPU it runs on now, and so may the
// children it forks meanwhile: they then get that CPU as soon as the parent
// waits for them, rather than a time slice on another CPU, behind another
// task. ch-run waits for the children it forks to start its FUSE server and
// its join holder; with both CPUs of a small node busy, that wait went from
// 3.1 ms to 0.3 ms. With a CPU to spare nothing changes: the children start
// there, beside the parent. The destructor gives the parent its CPUs back; a
// child calls restore() before it does anything that lasts.
class ForkOnThisCpu {
public:
    ForkOnThisCpu();
    ForkOnThisCpu(const ForkOnThisCpu&) = delete;
    ForkOnThisCpu& operator=(const ForkOnThisCpu&) = delete;

    ~ForkOnThisCpu() { restore(); }

    void restore() noexcept;

    bool pinned() const { return pinned_; }

private:
    cpu_set_t all_{};
    bool pinned_ = false;
};

} // namespace ch

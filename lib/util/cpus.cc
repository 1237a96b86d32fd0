// cpus.cc: see cpus.hh.
#include "util/cpus.hh"

#include <cstdio>
#include <string>

#include <sched.h>
#include <unistd.h>

#include "util/error.hh"
#include "util/fd.hh"

namespace ch {

unsigned usable_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return static_cast<unsigned>(CPU_COUNT(&set));
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<unsigned>(n) : 1;
}

bool idle_cpu_left(unsigned running, unsigned online, unsigned beside) {
    return running > 0 && running <= online + beside;
}

bool node_has_idle_cpu(unsigned beside) {
    // "0.52 0.61 0.81 2/250 12345": the fourth field's first number is how
    // many tasks run or wait to run now.
    unsigned running = 0, total = 0;
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    try {
        const std::string avg = read_file("/proc/loadavg");
        if (std::sscanf(avg.c_str(), "%*s %*s %*s %u/%u", &running, &total) != 2 || online <= 0)
            return false;
    } catch (const Error&) {
        return false;
    }
    return idle_cpu_left(running, static_cast<unsigned>(online), beside);
}

ForkOnThisCpu::ForkOnThisCpu() {
    CPU_ZERO(&all_);
    if (node_has_idle_cpu(0) || ::sched_getaffinity(0, sizeof all_, &all_) != 0)
        return;
    const int cpu = ::sched_getcpu();
    if (cpu < 0)
        return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pinned_ = ::sched_setaffinity(0, sizeof one, &one) == 0;
}

void ForkOnThisCpu::restore() noexcept {
    if (pinned_)
        static_cast<void>(::sched_setaffinity(0, sizeof all_, &all_));
    pinned_ = false;
}

} // namespace ch

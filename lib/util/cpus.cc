// cpus.cc: see cpus.hh.
#include "util/cpus.hh"

#include <cstdio>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

namespace ch {

unsigned usable_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return static_cast<unsigned>(CPU_COUNT(&set));
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<unsigned>(n) : 1;
}

bool idle_cpu_left(unsigned running, unsigned online) {
    return running > 0 && running <= online + 1;
}

bool node_has_idle_cpu() {
    // "0.52 0.61 0.81 2/250 12345": the fourth field's first number is how
    // many tasks run or wait to run now.
    const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[128];
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    unsigned running = 0, total = 0;
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    if (std::sscanf(buf, "%*s %*s %*s %u/%u", &running, &total) != 2 || online <= 0)
        return false;
    return idle_cpu_left(running, static_cast<unsigned>(online));
}

} // namespace ch

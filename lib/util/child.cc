// child.cc: see child.hh.
#include "util/child.hh"

#include <cerrno>
#include <cstring>
#include <exception>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/error.hh"
#include "util/fd.hh"

namespace ch {

int shell_status(int st) {
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

std::optional<std::string> run_in_child(const std::function<void()>& body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw_errno("can't create pipe");
    Fd rd(fds[0]), wr(fds[1]);
    const pid_t pid = ::fork();
    if (pid < 0)
        throw_errno("can't fork");
    if (pid == 0) {
        int code = 0;
        try {
            body();
        } catch (const std::exception& e) {
            const std::size_t n = std::strlen(e.what());
            if (::write(wr.get(), e.what(), n) < 0) {
                // the parent still sees the non-zero exit
            }
            code = 1;
        } catch (...) {
            code = 2;
        }
        ::_exit(code);
    }
    wr.reset();
    std::string msg;
    char buf[512];
    ssize_t n = 0;
    while ((n = ::read(rd.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            msg.append(buf, static_cast<std::size_t>(n));
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            throw_errno("can't wait for child process");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return std::nullopt;
    if (!msg.empty())
        return msg;
    if (WIFSIGNALED(st))
        return cat("child process killed by signal ", WTERMSIG(st), " (", ::strsignal(WTERMSIG(st)),
                   ")");
    return cat("child process exited with status ", WEXITSTATUS(st));
}

} // namespace ch

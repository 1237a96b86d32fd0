// squash.cc: see squash.hh. Process plumbing only: fork, the server's
// process setup, and passing the /dev/fuse descriptor over a socket
// (SCM_RIGHTS). The FUSE operations are in image/squash_serve.cc; the mount
// itself is in apply.cc.
#include "run/squash.hh"

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run/apply.hh"
#include "util/cpus.hh"
#include "util/error.hh"
#include "util/log.hh"

namespace ch::run {

namespace {

// The server's answer once it serves; anything else is its error message.
constexpr std::string_view ready_word = "ready";

// One byte with room for one descriptor (SCM_RIGHTS), as sent and received.
struct FdMessage {
    char byte = 'F';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};

    FdMessage() {
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
    }

    FdMessage(const FdMessage&) = delete; // msg points into the object
    FdMessage& operator=(const FdMessage&) = delete;
};

void send_fd(int sock, int fd) {
    FdMessage m;
    msghdr& msg = m.msg;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    while (::sendmsg(sock, &msg, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            throw_errno("can't send /dev/fuse to the FUSE server");
}

// Returns an empty Fd on end of file (the sender is gone).
Fd receive_fd(int sock) {
    FdMessage m;
    msghdr& msg = m.msg;
    ssize_t n = 0;
    while ((n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0)
        if (errno != EINTR)
            throw_errno("can't receive /dev/fuse");
    if (n == 0)
        return {};
    const cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(int)))
        fail("ch-run sent no /dev/fuse descriptor");
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return Fd(fd);
}

// Signals that reach a whole process group or job: Ctrl-C, Ctrl-\, Ctrl-Z,
// hangup, kill -- -PGID, and batch systems, which signal every process of a
// job step (Slurm's --signal, scancel -s USR1 for a checkpoint). They are
// for the command, which decides; the server must stay up while any process
// of the container may still read the image. SIGKILL still ends it, and
// fault signals (SEGV, BUS, ...) keep their default so a crash is a crash.
void ignore_job_signals() {
    for (const int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGUSR1, SIGUSR2, SIGALRM,
                          SIGTSTP, SIGTTIN, SIGTTOU, SIGXCPU, SIGVTALRM, SIGPROF, SIGPWR, SIGIO})
        if (std::signal(sig, SIG_IGN) == SIG_ERR)
            log::debug("can't ignore signal ", sig, ": ", std::strerror(errno));
}

// The server's standard streams: nothing to read, nothing for stdout, so a
// `$(ch-run ...)` or a pipe does not wait for it. stderr stays only at -v or
// more (its messages are for debugging), since it may be a pipe too.
void detach_stdio() {
    const Fd null = open_at(AT_FDCWD, "/dev/null", O_RDWR);
    if (::dup2(null.get(), STDIN_FILENO) < 0 || ::dup2(null.get(), STDOUT_FILENO) < 0)
        throw_errno("can't redirect the FUSE server's input and output");
    if (!log::enabled(log::Level::verbose) && ::dup2(null.get(), STDERR_FILENO) < 0)
        throw_errno("can't redirect the FUSE server's error output");
}

// The server, in the grandchild of ch-run. Never returns.
[[noreturn]] void server_main(image::SquashFile& file, Fd sock, const image::ServeOptions& opts) {
    int code = 0;
    try {
        ignore_job_signals();
        // A session and process group of its own: a batch system that
        // tracks a job by its process group (Slurm's proctrack/pgid) waits
        // for every member to be gone, zombies too, and a daemon's zombie is
        // init's to reap; on this project's test VM that took 1 to 3 s more
        // for each job step that mounted an image. The server still goes
        // with the container: it needs no signal for that.
        if (::setsid() < 0)
            log::debug("FUSE server: can't start a session of its own: ", std::strerror(errno));
        ::prctl(PR_SET_NAME, squash_server_name, 0, 0, 0);
        detach_stdio();
        close_fds_except({sock.get(), file.fd()});
        if (::chdir("/") != 0) // don't pin ch-run's working directory
            throw_errno("can't chdir to /");
        // The server needs no privilege: it reads two descriptors it already
        // has. Root's server gives up its capabilities too.
        if (::geteuid() == 0)
            drop_privileges();
        else if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            throw_errno("can't set no_new_privs");
        const auto receive = [&] {
            return receive_fd(sock.get());
        };
        image::serve(file, receive, opts, [&](const std::string& error) {
            const std::string reply = error.empty() ? std::string(ready_word) : error;
            if (::send(sock.get(), reply.data(), reply.size(), MSG_NOSIGNAL) < 0)
                log::debug("can't tell ch-run the FUSE server's state: ", std::strerror(errno));
            sock.reset();
        });
    } catch (const std::exception& e) {
        log::error("FUSE server for ", file.path().string(), ": ", e.what());
        code = static_cast<int>(Exit::squash);
    }
    ::_exit(code);
}

} // namespace

SquashServer SquashServer::start(image::SquashFile& file, uid_t uid, gid_t gid,
                                 const std::string& command, const std::string& path) {
    const std::string what = cat("can't start the FUSE server for ", file.path().string());
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        throw_errno_code(Exit::squash, what);
    Fd mine(sv[0]);
    Fd theirs(sv[1]);
    image::ServeOptions opts;
    opts.uid = uid;
    opts.gid = gid;
    opts.debug = log::enabled(log::Level::trace);
    opts.warm_command = command;
    opts.warm_path = path;
    // ch-run is single-threaded here, so the children may do anything
    // before exec or _exit (no lock can be held by a thread that is gone).
    // The two processes start on ch-run's CPU when the node has none to
    // spare (ForkOnThisCpu): `ch-run IMG.sqfs -- /bin/true` with both CPUs
    // of a small node busy took 0.445 of Charliecloud's time, not 0.496.
    ForkOnThisCpu on_this_cpu;
    const pid_t child = ::fork();
    if (child < 0)
        throw_errno_code(Exit::squash, what);
    if (child == 0) {
        mine.reset(); // else the server would never see ch-run's end close
        const pid_t server = ::fork();
        if (server == 0) {
            on_this_cpu.restore(); // before it starts any thread
            server_main(file, std::move(theirs), opts);
        }
        ::_exit(server < 0 ? 1 : 0);
    }
    on_this_cpu.restore();
    theirs.reset();
    return {std::move(mine), file.path(), child};
}

bool SquashServer::reap_helper() noexcept {
    if (helper_ < 0)
        return true;
    int st = 0;
    pid_t r = 0;
    while ((r = ::waitpid(helper_, &st, 0)) < 0 && errno == EINTR) {
    }
    helper_ = -1;
    return r > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

void SquashServer::hand_over(Fd fuse_dev) {
    const std::string what = cat("can't mount ", image_.string());
    if (!reap_helper())
        throw Error(cat("can't start the FUSE server for ", image_.string(), ": can't fork"),
                    Exit::squash);
    try {
        send_fd(sock_.get(), fuse_dev.get());
    } catch (Error& e) {
        // The server may have failed before taking the descriptor (and
        // closed its end): its message says more than EPIPE.
        char reply[1024];
        const ssize_t n = ::recv(sock_.get(), reply, sizeof reply, MSG_DONTWAIT);
        const std::string_view said(reply, n > 0 ? static_cast<std::size_t>(n) : 0);
        if (!said.empty() && said != ready_word)
            throw Error(cat(what, ": ", said), Exit::squash);
        e.add_context(what);
        e.set_exit_code(Exit::squash);
        throw;
    }
    fuse_dev.reset(); // the server has its own copy now
    char reply[1024];
    ssize_t n = 0;
    while ((n = ::recv(sock_.get(), reply, sizeof reply, 0)) < 0)
        if (errno != EINTR)
            throw_errno_code(Exit::squash, what, ": no answer from the FUSE server");
    sock_.reset();
    const std::string_view answer(reply, n > 0 ? static_cast<std::size_t>(n) : 0);
    if (n == 0)
        throw Error(cat(what, ": the FUSE server exited before serving (run with -v to see why)"),
                    Exit::squash);
    if (answer != ready_word)
        throw Error(cat(what, ": ", answer), Exit::squash);
}

} // namespace ch::run

// join.cc: see join.hh. The object is shared memory written only through
// atomics, and nobody ever holds a lock in it, so a peer killed at any point
// can't block the others: they proceed, or time out.
#include "run/join.hh"

#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>

#include <fcntl.h>
#include <linux/futex.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run/apply.hh"
#include "util/cpus.hh"
#include "util/error.hh"
#include "util/log.hh"

namespace ch::run {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Layout version 1; a peer of another ch-run version refuses the object
// rather than misreading it.
constexpr std::uint32_t join_magic = 0x63686a31; // "chj1"

enum : std::uint32_t { setting_up = 0, ready = 1, failed = 2 };

struct JoinGroup::Shared {
    std::atomic<std::uint32_t> seq; // futex word: bumped on every change below
    std::uint32_t magic;
    std::uint32_t count;
    std::atomic<std::uint32_t> state;
    std::atomic<std::uint32_t> arrived;
    std::atomic<std::uint32_t> joined; // peers inside the namespaces, first peer included
    std::int32_t creator_pid;
    std::atomic<std::int32_t> holder_pid;
    std::uint64_t obj_dev, obj_ino; // this object, so only it is ever unlinked
    std::uint64_t user_dev, user_ino, mnt_dev, mnt_ino;
    std::int64_t timeout_ms;
    char why[512]; // the first peer's error, NUL-terminated
};

static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

namespace {

// --- count and tag --------------------------------------------------------

bool to_uint(std::string_view s, unsigned& out) {
    unsigned long long n = 0;
    if (!parse_uint(s, UINT_MAX, n))
        return false;
    out = static_cast<unsigned>(n);
    return true;
}

std::string seconds(milliseconds ms) {
    const auto n = ms.count();
    return n % 1000 == 0 ? cat(n / 1000, " s") : cat(n / 1000, ".", (n % 1000) / 100, " s");
}

// --- futex on the shared word ---------------------------------------------

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t seen, milliseconds max) {
    timespec ts{static_cast<time_t>(max.count() / 1000),
                static_cast<long>((max.count() % 1000) * 1'000'000)};
    // Not FUTEX_PRIVATE_FLAG: the waiters are in other processes.
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, seen, &ts, nullptr,
              0);
}

void futex_wake(std::atomic<std::uint32_t>& word) {
    word.fetch_add(1, std::memory_order_acq_rel);
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr,
              nullptr, 0);
}

// Waits until done() or the deadline; tick() runs between waits (it may
// throw). Wakes at least every 50 ms, so a dead first peer is noticed even
// though nobody wakes the futex for it.
template <typename Done, typename Tick>
bool wait_until(std::atomic<std::uint32_t>& seq, Clock::time_point deadline, Done done, Tick tick) {
    for (;;) {
        const std::uint32_t seen = seq.load(std::memory_order_acquire);
        if (done())
            return true;
        const auto now = Clock::now();
        if (now >= deadline)
            return false;
        tick();
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - now);
        futex_wait(seq, seen, std::min(left + milliseconds(1), milliseconds(50)));
    }
}

std::string octal(unsigned m) {
    std::string s;
    do {
        s.insert(s.begin(), static_cast<char>('0' + (m & 7)));
        m >>= 3;
    } while (m != 0);
    return "0" + s;
}

bool alive(pid_t pid) {
    return pid > 0 && ::kill(pid, 0) == 0;
}

// Remove the object's name if the name still leads to this very object: a
// later group of the same tag may have made a new one.
// Async-signal-safe unless the unlink fails.
void unlink_if_same(int dir, const char* name, std::uint64_t dev, std::uint64_t ino) {
    struct stat st {};

    if (::fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev &&
        st.st_ino == ino && ::unlinkat(dir, name, 0) != 0 && errno != ENOENT)
        log::warning("can't remove /dev/shm/", name, ": ", std::strerror(errno));
}

void unlink_if_same(int dir, const std::string& name, std::uint64_t dev, std::uint64_t ino) {
    unlink_if_same(dir, name.c_str(), dev, ino);
}

std::pair<std::uint64_t, std::uint64_t> ns_id(const char* path) {
    struct stat st {};

    if (::stat(path, &st) != 0)
        throw_errno("can't stat ", path);
    return {st.st_dev, st.st_ino};
}

// --- the holder -----------------------------------------------------------

volatile std::sig_atomic_t holder_stop = 0;

// --- a peer stopped by a job's signal -------------------------------------

// What a peer's handler for SIGTERM, SIGINT and SIGHUP (scancel, Ctrl-C)
// needs, between arriving and exec (which resets the handlers): if every
// peer is stopped before the last one arrives, nobody else would remove the
// name. Only async-signal-safe calls in the handler.
struct Leaving {
    int dir = -1;
    char name[256] = {};
    std::uint64_t dev = 0, ino = 0;
    void* shared = nullptr; // JoinGroup::Shared, when this peer is the first
};

Leaving leaving;
constexpr int job_signals[] = {SIGTERM, SIGINT, SIGHUP};
struct sigaction saved_actions[3];
bool handlers_set = false;

void peer_on_signal(int sig);

void set_leaving_handlers(int dir, const std::string& name, std::uint64_t dev, std::uint64_t ino,
                          void* shared) {
    if (handlers_set || name.size() >= sizeof leaving.name)
        return;
    leaving.dir = dir;
    std::memcpy(leaving.name, name.c_str(), name.size() + 1);
    leaving.dev = dev;
    leaving.ino = ino;
    leaving.shared = shared;

    struct sigaction sa {};

    sa.sa_handler = peer_on_signal;
    for (int i = 0; i < 3; i++)
        ::sigaction(job_signals[i], &sa, &saved_actions[i]);
    handlers_set = true;
}

// The first peer tells the others why it is gone; then the name goes, and
// the signal does what it would have done.
void peer_on_signal(int sig) {
    const int saved = errno;
    if (leaving.shared != nullptr) {
        auto* sh = static_cast<JoinGroup::Shared*>(leaving.shared);
        if (sh->state.load() == setting_up) {
            static const char why[] = "it was stopped by a signal";
            std::memcpy(sh->why, why, sizeof why);
            sh->state = failed;
            futex_wake(sh->seq);
        }
    }
    unlink_if_same(leaving.dir, leaving.name, leaving.dev, leaving.ino);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    errno = saved;
}

void clear_leaving_handlers() {
    if (!handlers_set)
        return;
    for (int i = 0; i < 3; i++)
        ::sigaction(job_signals[i], &saved_actions[i], nullptr);
    handlers_set = false;
    leaving = Leaving{};
}

extern "C" void holder_on_signal(int) {
    holder_stop = 1;
}

} // namespace

std::optional<milliseconds> parse_join_timeout(std::string_view s) {
    const std::size_t dot = s.find('.');
    const std::string_view whole = s.substr(0, dot);
    std::string_view frac = dot == std::string_view::npos ? "" : s.substr(dot + 1);
    unsigned w = 0, f = 0;
    if (whole.empty() || !to_uint(whole, w) || w > 86400 || frac.size() > 3 ||
        (dot != std::string_view::npos && (frac.empty() || !to_uint(frac, f))))
        return std::nullopt;
    for (std::size_t i = frac.size(); i < 3; i++)
        f *= 10;
    const milliseconds ms(static_cast<long long>(w) * 1000 + f);
    if (ms.count() == 0 || ms > milliseconds(86'400'000))
        return std::nullopt;
    return ms;
}

unsigned tasks_on_node(std::string_view list, std::optional<unsigned> node_id) {
    const std::string what = cat("SLURM_STEP_TASKS_PER_NODE=", printable(list));
    // Each item is N or N(xK): N tasks on each of K nodes.
    std::vector<std::pair<unsigned, unsigned>> items;
    for (const auto& item : split(list, ',')) {
        std::string_view it = item;
        unsigned tasks = 0, nodes = 1;
        const std::size_t paren = it.find('(');
        if (paren != std::string_view::npos) {
            const std::string_view rep = it.substr(paren);
            if (rep.size() < 4 || rep.substr(0, 2) != "(x" || rep.back() != ')' ||
                !to_uint(rep.substr(2, rep.size() - 3), nodes) || nodes == 0)
                fail("can't read ", what, ": bad repeat ", printable(rep), " (expected N(xK))");
            it = it.substr(0, paren);
        }
        if (!to_uint(it, tasks) || tasks == 0)
            fail("can't read ", what, ": bad task count ", printable(item));
        items.emplace_back(tasks, nodes);
    }
    if (items.empty())
        fail("can't read ", what, ": empty");
    if (!node_id) {
        for (const auto& [tasks, nodes] : items)
            if (tasks != items[0].first)
                fail("can't tell this node's task count from ", what,
                     ": SLURM_NODEID not set and the nodes differ (give --join-ct)");
        return items[0].first;
    }
    unsigned long long node = 0;
    for (const auto& [tasks, nodes] : items) {
        node += nodes;
        if (*node_id < node)
            return tasks;
    }
    fail("can't tell this node's task count: SLURM_NODEID=", *node_id, " but ", what, " lists ",
         node, " node", node == 1 ? "" : "s");
}

unsigned default_join_count(const EnvLookup& env) {
    if (const char* ompi = env("OMPI_COMM_WORLD_LOCAL_SIZE")) {
        unsigned n = 0;
        if (!to_uint(ompi, n) || n == 0)
            fail("--join: bad OMPI_COMM_WORLD_LOCAL_SIZE=", printable(ompi),
                 " (must be a positive integer; or give --join-ct)");
        return n;
    }
    if (const char* tpn = env("SLURM_STEP_TASKS_PER_NODE")) {
        std::optional<unsigned> node;
        if (const char* id = env("SLURM_NODEID")) {
            unsigned n = 0;
            if (!to_uint(id, n))
                fail("--join: bad SLURM_NODEID=", printable(id), " (or give --join-ct)");
            node = n;
        }
        try {
            return tasks_on_node(tpn, node);
        } catch (Error& e) {
            e.add_context("--join");
            throw;
        }
    }
    fail("--join: can't tell how many peers to wait for: give --join-ct=N, or run under srun "
         "(SLURM_STEP_TASKS_PER_NODE) or mpirun (OMPI_COMM_WORLD_LOCAL_SIZE)");
}

std::string default_join_tag(const EnvLookup& env, pid_t ppid) {
    const char* job = env("SLURM_JOB_ID");
    const char* step = env("SLURM_STEP_ID");
    if (job != nullptr && *job != '\0' && step != nullptr && *step != '\0')
        return cat("slurm-", job, ".", step);
    if (const char* ns = env("PMIX_NAMESPACE"); ns != nullptr && *ns != '\0')
        return cat("pmix-", ns);
    return cat("ppid-", ppid);
}

std::string join_object_name(uid_t uid, std::string_view tag) {
    std::string esc;
    for (const unsigned char c : tag) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '+' || c == '-') {
            esc += static_cast<char>(c);
        } else {
            static const char hex[] = "0123456789abcdef";
            esc += '%';
            esc += hex[c >> 4];
            esc += hex[c & 15];
        }
    }
    std::string name = cat("ch-run-join.", uid, ".");
    // NAME_MAX is 255; two tags may share the first 200 bytes, so the hash
    // of the whole tag keeps them apart (FNV-1a, 64 bits).
    if (name.size() + esc.size() > 240) {
        std::uint64_t h = 14695981039346656037ULL;
        for (const unsigned char c : tag)
            h = (h ^ c) * 1099511628211ULL;
        static const char hex[] = "0123456789abcdef";
        std::string hs;
        for (int i = 60; i >= 0; i -= 4)
            hs += hex[(h >> i) & 15];
        esc = esc.substr(0, 200) + "#" + hs;
    }
    return name + esc;
}

JoinGroup::JoinGroup(Fd dir, std::string name, JoinSpec spec, Shared* shared, bool first)
    : dir_(std::move(dir))
    , name_(std::move(name))
    , spec_(std::move(spec))
    , shared_(shared)
    , first_(first) {}

JoinGroup::JoinGroup(JoinGroup&& o) noexcept
    : dir_(std::move(o.dir_))
    , name_(std::move(o.name_))
    , spec_(std::move(o.spec_))
    , shared_(std::exchange(o.shared_, nullptr))
    , first_(o.first_) {}

JoinGroup::~JoinGroup() {
    if (shared_ != nullptr && handlers_set && leaving.ino == shared_->obj_ino)
        clear_leaving_handlers();
    if (shared_ != nullptr)
        ::munmap(shared_, sizeof(Shared));
}

unsigned JoinGroup::arrived() const {
    return shared_->arrived.load();
}

JoinGroup JoinGroup::arrive(const JoinSpec& spec, const fs::path& dir_path) {
    const std::string what = cat("can't join group ", printable(spec.tag));
    if (spec.tag.empty())
        fail(what, ": the tag is empty");
    if (spec.count == 0)
        fail(what, ": the peer count must be at least 1");
    const uid_t euid = ::geteuid();
    const std::string name = join_object_name(euid, spec.tag);
    const std::string shown = (dir_path / name).string();
    Fd dir = open_at(AT_FDCWD, dir_path, O_PATH | O_DIRECTORY);
    const auto map = [&](int fd) {
        void* p = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            throw_errno(what, ": can't map ", shown);
        return static_cast<Shared*>(p);
    };

    // A few rounds: another peer may create the object between our look and
    // our create, or a stale one may have to go first.
    for (int round = 0; round < 8; round++) {
        Fd fd(::openat(dir.get(), name.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        if (fd) {
            struct stat st {};

            if (::fstat(fd.get(), &st) != 0)
                throw_errno(what, ": can't stat ", shown);
            if (!S_ISREG(st.st_mode) || st.st_uid != euid || (st.st_mode & 07777) != 0600 ||
                st.st_size != static_cast<off_t>(sizeof(Shared)))
                fail(what, ": refusing ", shown, ": not a join object of this user's (owner uid ",
                     st.st_uid, ", mode ", octal(st.st_mode & 07777),
                     S_ISREG(st.st_mode) ? "" : ", not a regular file", ", ", st.st_size,
                     " bytes); remove it if it is stale");
            Shared* sh = map(fd.get());
            JoinGroup g(std::move(dir), name, spec, sh, false);
            if (sh->magic != join_magic || sh->obj_ino != st.st_ino)
                fail(what, ": refusing ", shown,
                     ": not a join object of this ch-run version; remove it if it is stale");
            const std::uint32_t state = sh->state.load();
            if ((state == setting_up && !alive(sh->creator_pid)) ||
                (state == ready && !alive(sh->holder_pid.load()))) {
                log::verbose("join: removing stale ", shown);
                unlink_if_same(g.dir_.get(), name, st.st_dev, st.st_ino);
                dir = std::move(g.dir_);
                continue;
            }
            if (sh->count != spec.count)
                fail(what, ": this peer counts ", spec.count, " peers, but the group was made for ",
                     sh->count, " (all peers need the same --join-ct)");
            const std::uint32_t n = sh->arrived.fetch_add(1) + 1;
            if (n > sh->count) {
                // Complete already: its last peer is about to take the name
                // away. Do it for them and start a new group, as a peer
                // arriving a moment later would (an extra peer then times
                // out waiting, whenever it came).
                sh->arrived.fetch_sub(1);
                unlink_if_same(g.dir_.get(), name, st.st_dev, st.st_ino);
                dir = std::move(g.dir_);
                continue;
            }
            if (n == sh->count) // everyone is here: the name has done its job
                unlink_if_same(g.dir_.get(), name, st.st_dev, st.st_ino);
            futex_wake(sh->seq);
            set_leaving_handlers(g.dir_.get(), name, st.st_dev, st.st_ino, nullptr);
            log::verbose("join: peer ", n, " of ", sh->count, " in group ", spec.tag);
            return g;
        }
        if (errno == ELOOP)
            fail(what, ": refusing ", shown, ": it is a symbolic link");
        if (errno == EACCES || errno == EPERM)
            fail(what, ": refusing ", shown, ": it belongs to another user");
        if (errno != ENOENT)
            throw_errno(what, ": can't open ", shown);

        // Nothing there: make the object complete before it has a name.
        Fd tmp(::openat(dir.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
        if (!tmp)
            throw_errno(what, ": can't create a file in ", dir_path.string());

        struct stat st {};

        if (::fchmod(tmp.get(), 0600) != 0 || ::ftruncate(tmp.get(), sizeof(Shared)) != 0 ||
            ::fstat(tmp.get(), &st) != 0)
            throw_errno(what, ": can't set up ", shown);
        Shared* sh = map(tmp.get());
        JoinGroup g(std::move(dir), name, spec, sh, true);
        sh->magic = join_magic;
        sh->count = spec.count;
        sh->arrived = 1;
        sh->creator_pid = ::getpid();
        sh->obj_dev = st.st_dev;
        sh->obj_ino = st.st_ino;
        sh->timeout_ms = spec.timeout.count();
        if (spec.count == 1) // nobody to wait for: no name, nothing to clean
            return g;
        if (::linkat(AT_FDCWD, tmp.proc_path().c_str(), g.dir_.get(), name.c_str(),
                     AT_SYMLINK_FOLLOW) == 0) {
            set_leaving_handlers(g.dir_.get(), name, st.st_dev, st.st_ino, sh);
            log::verbose("join: first peer of ", spec.count, " in group ", spec.tag);
            return g;
        }
        if (errno != EEXIST)
            throw_errno(what, ": can't create ", shown);
        dir = std::move(g.dir_); // another peer was first; join it
    }
    fail(what, ": ", shown, " keeps changing");
}

void JoinGroup::publish_ready() {
    Shared& sh = *shared_;
    const auto [udev, uino] = ns_id("/proc/self/ns/user");
    const auto [mdev, mino] = ns_id("/proc/self/ns/mnt");
    sh.user_dev = udev;
    sh.user_ino = uino;
    sh.mnt_dev = mdev;
    sh.mnt_ino = mino;
    sh.joined = 1;
    if (sh.count > 1) {
        // Every peer waits for this: on a busy node, the holder starts on
        // this CPU (ForkOnThisCpu).
        ForkOnThisCpu on_this_cpu;
        // ch-run is single-threaded, so the children may do anything.
        const pid_t child = ::fork();
        if (child < 0)
            throw_errno("can't start the join holder");
        if (child == 0) {
            const pid_t holder = ::fork();
            if (holder == 0) {
                on_this_cpu.restore();
                const int dir = dir_.get();
                const auto deadline = Clock::now() + milliseconds(sh.timeout_ms);
                try {
                    ::prctl(PR_SET_NAME, join_holder_name, 0, 0, 0);

                    struct sigaction sa {};

                    sa.sa_handler = holder_on_signal; // no SA_RESTART: the futex wait returns
                    for (const int sig : {SIGTERM, SIGINT, SIGHUP})
                        ::sigaction(sig, &sa, nullptr);
                    // Its output would keep a pipe open (a $(...) would wait
                    // for it); only at -v does its warning matter more.
                    const Fd null = open_at(AT_FDCWD, "/dev/null", O_RDWR);
                    ::dup2(null.get(), STDIN_FILENO);
                    ::dup2(null.get(), STDOUT_FILENO);
                    if (!log::enabled(log::Level::verbose))
                        ::dup2(null.get(), STDERR_FILENO);
                    close_fds_except({dir, STDERR_FILENO});
                    drop_privileges();
                } catch (const std::exception& e) {
                    log::warning("join holder: ", e.what());
                }
                const bool all = wait_until(
                    sh.seq, deadline, [&] { return sh.joined.load() >= sh.count || holder_stop; },
                    [] {});
                if (!all)
                    log::warning("join group ", spec_.tag, ": timed out after ",
                                 seconds(milliseconds(sh.timeout_ms)), ": ", sh.joined.load(),
                                 " of ", sh.count, " peers joined (", sh.arrived.load(),
                                 " arrived)");
                unlink_if_same(dir, name_, sh.obj_dev, sh.obj_ino);
                // Out of the job's process group as it goes (it needed the
                // group only for the job's signals): its zombie is init's
                // to reap, and Slurm's proctrack/pgid waits for every member
                // of the group, zombies too; on this project's test VM each
                // --join step took 1 to 3 s more.
                ::setsid();
                ::_exit(0);
            }
            sh.holder_pid = holder;
            ::_exit(holder > 0 ? 0 : 1);
        }
        int st = 0;
        while (::waitpid(child, &st, 0) < 0)
            if (errno != EINTR)
                throw_errno("can't start the join holder");
        on_this_cpu.restore();
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || sh.holder_pid.load() <= 0)
            fail("can't start the join holder: can't fork");
        log::debug("join: holder pid ", sh.holder_pid.load());
    }
    sh.state = ready;
    futex_wake(sh.seq);
}

void JoinGroup::publish_failed(std::string_view why) noexcept {
    Shared& sh = *shared_;
    if (sh.state.load() != setting_up) // the container was built; the command failed
        return;
    const std::size_t n = std::min(why.size(), sizeof sh.why - 1);
    std::memcpy(sh.why, why.data(), n);
    sh.why[n] = '\0';
    sh.state = failed;
    futex_wake(sh.seq);
    unlink_if_same(dir_.get(), name_, sh.obj_dev, sh.obj_ino);
}

JoinNamespaces JoinGroup::wait_for_container() {
    Shared& sh = *shared_;
    const std::string group = cat("join group ", printable(spec_.tag));
    const auto deadline = Clock::now() + spec_.timeout;
    const bool done = wait_until(
        sh.seq, deadline, [&] { return sh.state.load() != setting_up; },
        [&] {
            if (!alive(sh.creator_pid) && sh.state.load() == setting_up) {
                unlink_if_same(dir_.get(), name_, sh.obj_dev, sh.obj_ino);
                fail(group, ": the first peer (pid ", sh.creator_pid,
                     ") exited before its container was ready");
            }
        });
    if (!done) {
        unlink_if_same(dir_.get(), name_, sh.obj_dev, sh.obj_ino);
        fail(group, ": timed out after ", seconds(spec_.timeout),
             " waiting for the first peer's container (", sh.arrived.load(), " of ", sh.count,
             " peers arrived)");
    }
    if (sh.state.load() == failed)
        fail(group,
             ": the first peer failed: ", std::string(sh.why, ::strnlen(sh.why, sizeof sh.why)));
    const pid_t holder = sh.holder_pid.load();
    const std::string gone =
        cat(group, ": the container's namespaces are gone (its holder, pid ", holder, ", exited)");
    JoinNamespaces ns;
    ns.user = try_open_at(AT_FDCWD, cat("/proc/", holder, "/ns/user"), O_RDONLY);
    ns.mnt = try_open_at(AT_FDCWD, cat("/proc/", holder, "/ns/mnt"), O_RDONLY);

    struct stat u {
    }, m{};

    if (!ns.user || !ns.mnt || ::fstat(ns.user.get(), &u) != 0 || ::fstat(ns.mnt.get(), &m) != 0 ||
        u.st_dev != sh.user_dev || u.st_ino != sh.user_ino || m.st_dev != sh.mnt_dev ||
        m.st_ino != sh.mnt_ino)
        fail(gone);
    return ns;
}

void JoinGroup::joined() {
    shared_->joined.fetch_add(1);
    futex_wake(shared_->seq);
}

JoinNamespaces container_namespaces(pid_t pid) {
    const std::string what = cat("can't join pid ", pid);
    if (pid <= 0)
        fail(what, ": not a process id");
    const Fd proc = try_open_at(AT_FDCWD, cat("/proc/", pid), O_PATH | O_DIRECTORY);
    if (!proc)
        throw_errno(what);

    struct stat st {};

    if (::fstat(proc.get(), &st) != 0)
        throw_errno(what);
    const uid_t euid = ::geteuid();
    if (st.st_uid != euid)
        fail(what, ": it is another user's process (uid ", st.st_uid, ")");
    JoinNamespaces ns;
    ns.user = try_open_at(proc.get(), "ns/user", O_RDONLY);
    if (!ns.user)
        throw_errno(what, ": can't open its user namespace");
    ns.mnt = try_open_at(proc.get(), "ns/mnt", O_RDONLY);
    if (!ns.mnt)
        throw_errno(what, ": can't open its mount namespace");

    struct stat theirs {};

    if (::fstat(ns.user.get(), &theirs) != 0)
        throw_errno(what);
    const auto [mdev, mino] = ns_id("/proc/self/ns/user");
    if (theirs.st_dev == mdev && theirs.st_ino == mino)
        fail(what, ": it is not in a container (it shares ch-run's user namespace)");
    uid_t owner = 0;
    if (::ioctl(ns.user.get(), NS_GET_OWNER_UID, &owner) != 0)
        throw_errno(what, ": can't tell who owns its user namespace");
    if (owner != euid)
        fail(what, ": its container belongs to another user (uid ", owner, ")");
    return ns;
}

} // namespace ch::run

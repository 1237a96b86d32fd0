// join.hh: --join, one container for all the peers of a job step on a node,
// and --join-pid. The peers agree on a tag and a count; the first to arrive
// (the "first peer") builds the container as usual, the others enter its user
// and mount namespaces, so MPI shared memory and cross-memory attach work
// between them and a SquashFS image is mounted (one FUSE server) once.
//
// The rendezvous is one small file in /dev/shm, the user's own:
//
//   /dev/shm/ch-run-join.UID.TAG   mode 0600, O_NOFOLLOW, owner checked
//
// made complete in a nameless file (O_TMPFILE) and linked under its name, so
// no peer ever sees a half-written one, and a planted file (another user's, a
// symlink, a wrong mode or size) is refused, never followed or trusted. Each
// peer maps it and counts itself in. The last peer to arrive removes the
// name, so nothing stays in /dev/shm once everyone has arrived; if someone
// never arrives, the holder (below) removes it at the timeout.
//
// Why the namespaces stay alive for late peers: a namespace lives while a
// process is in it, and the first peer's command may exit at once (--join --
// /bin/true). So the first peer, once inside its container, forks a holder:
// a process with no capabilities and no descriptors but the /dev/shm
// directory, in the container's namespaces, that waits until the last peer
// has joined (or the timeout) and exits. It is double forked (nobody's
// child: the command must not find a stray child), and SIGTERM ends it as it
// ends the peers. Peers enter through /proc/HOLDER/ns/{user,mnt}, and check
// the inodes of both against those the first peer recorded from inside its
// container, so a recycled pid can never lead a peer into another container.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "util/fd.hh"

namespace ch::run {

// getenv, or a stand-in for tests.
using EnvLookup = std::function<const char*(const char*)>;

// This node's tasks from Slurm's compressed per-node list, e.g.
// SLURM_STEP_TASKS_PER_NODE="4(x2),2": nodes 0 and 1 run 4, node 2 runs 2.
// node_id is SLURM_NODEID; without one, the list must give every node the same
// count. Throws Error naming the value when it is malformed or too short.
unsigned tasks_on_node(std::string_view tasks_per_node, std::optional<unsigned> node_id);

// The number of peers when --join-ct is not given: Open MPI's local size
// (OMPI_COMM_WORLD_LOCAL_SIZE) if set, since it comes from the launcher that
// started this very process (under mpirun in a Slurm job, the Slurm step is
// mpirun's daemons, one per node); else this node's share of
// SLURM_STEP_TASKS_PER_NODE. Throws Error when neither says.
unsigned default_join_count(const EnvLookup& env);

// The tag when --join-tag is not given: "slurm-JOB.STEP" in a Slurm step,
// else "pmix-NAMESPACE" under a PMIx launcher (mpirun), else "ppid-PID" (the
// peers' common parent). Every tag is per user: the object's name holds the
// uid (join_object_name).
std::string default_join_tag(const EnvLookup& env, pid_t ppid);

// "ch-run-join.UID.TAG", with bytes outside [A-Za-z0-9._+-] in TAG escaped as
// %XX; a tag too long for a file name is cut and ends with a hash of the whole.
std::string join_object_name(uid_t uid, std::string_view tag);

struct JoinSpec {
    std::string tag;
    unsigned count = 0;
    std::chrono::milliseconds timeout{30'000};
};

constexpr std::chrono::milliseconds join_timeout_default{30'000};

// A timeout in seconds, "30" or "2.5" (to the millisecond), more than zero
// and at most a day; nullopt if it is not.
std::optional<std::chrono::milliseconds> parse_join_timeout(std::string_view seconds);

// Descriptors of the first peer's namespaces (/proc/PID/ns/*), checked.
struct JoinNamespaces {
    Fd user;
    Fd mnt;
};

// One peer's part in a join group.
class JoinGroup {
public:
    // Arrive: create the group's object (this peer is then the first) or
    // count this peer into the existing one. A stale object of the user's
    // own (its first peer or holder died) is removed and the group made
    // anew. Throws Error for a planted object, a count that differs from the
    // group's, or a full group. dir is /dev/shm but for tests.
    static JoinGroup arrive(const JoinSpec& spec, const fs::path& dir = "/dev/shm");

    JoinGroup(JoinGroup&&) noexcept;
    JoinGroup& operator=(JoinGroup&&) = delete;
    JoinGroup(const JoinGroup&) = delete;
    ~JoinGroup();

    bool first() const { return first_; }

    // The first peer, inside its finished container: record its namespaces,
    // start the holder (if any peer is still to come) and let the others in.
    void publish_ready();
    // The first peer, when building the container failed: the others fail
    // with why instead of waiting for the timeout.
    void publish_failed(std::string_view why) noexcept;

    // Another peer: wait for the first peer's container and open its
    // namespaces. Throws Error at the timeout (naming the tag and how many
    // peers arrived) or if the first peer failed or died.
    JoinNamespaces wait_for_container();
    // Another peer, once inside: count it in, so the holder can go.
    void joined();

    // Peers that have arrived so far (for messages and tests).
    unsigned arrived() const;

    struct Shared; // the object's layout, in join.cc

private:
    JoinGroup(Fd dir, std::string name, JoinSpec spec, Shared* shared, bool first);

    Fd dir_;
    std::string name_;
    JoinSpec spec_;
    Shared* shared_ = nullptr;
    bool first_ = false;
};

// The process name of the holder (prctl PR_SET_NAME), for ps and pgrep.
constexpr const char* join_holder_name = "ch-join-holder";

// --join-pid: the namespaces of a running container of this user. Refused
// (Error) for a process of another user, one that is not in a container (in
// ch-run's own user namespace), or one whose user namespace another user
// made.
JoinNamespaces container_namespaces(pid_t pid);

} // namespace ch::run

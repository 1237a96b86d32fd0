// apply.hh: carry out a Plan. The only code in lib/run that changes
// namespaces, mounts, id maps or capabilities (test/checks/audit-syscalls.sh).
#pragma once

#include <functional>
#include <string_view>

#include "run/plan.hh"
#include "util/fd.hh"

namespace ch::run {

// For a SquashFS plan: gives the mounted /dev/fuse descriptor to the FUSE
// server and returns once it serves (SquashServer::hand_over).
using FuseHandOver = std::function<void(Fd fuse_dev)>;

// Create a user and a mount namespace, map uid and gid (one line each: inside
// -> outside) and make every mount private, so nothing done afterwards
// reaches the host's mounts. Used by apply and by the probes (probe.cc);
// hint ends the message when unshare fails.
void enter_namespaces(const IdMap& uid, const IdMap& gid, std::string_view hint = {});

// Create the user and mount namespaces, write the id maps, mount the
// SquashFS image if the plan has one (then hand_over is required), build the
// new root from the plan and pivot into it. On return the process is inside
// the container with cwd "/". Throws Error naming the step that failed
// (Exit::squash for the SquashFS mount).
void apply(const Plan& plan, const FuseHandOver& hand_over = {});

// --join and --join-pid: enter an existing container's user namespace, then
// its mount namespace, whose root and working directory become ours (so no
// pivot is needed). Throws Error naming the namespace that refused.
void join_namespaces(const Fd& user, const Fd& mnt);

// Last thing before exec: drop every capability (bounding, ambient,
// inheritable, permitted, effective) and set PR_SET_NO_NEW_PRIVS, so the
// command gets no privilege, even as uid 0 in the container.
void drop_privileges();

} // namespace ch::run

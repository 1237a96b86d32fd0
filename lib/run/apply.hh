// apply.hh: carry out a Plan. The only code in lib/run that changes
// namespaces, mounts, id maps or capabilities (test/checks/audit-syscalls.sh).
#pragma once

#include "run/plan.hh"

namespace ch::run {

// Create the user and mount namespaces, write the id maps, build the new
// root from the plan and pivot into it. On return the process is inside the
// container with cwd "/". Throws Error naming the step that failed.
void apply(const Plan& plan);

// Last thing before exec: drop every capability (bounding, ambient,
// inheritable, permitted, effective) and set PR_SET_NO_NEW_PRIVS, so the
// command gets no privilege, even as uid 0 in the container.
void drop_privileges();

} // namespace ch::run

// privs.hh: ch-run and friends must never run with more privilege than the
// user who started them: no setuid/setgid bit, no file capabilities.
#pragma once

namespace ch {

// Throws Error if this process was started setuid, setgid or with file
// capabilities (AT_SECURE), or if its real and effective ids differ.
void refuse_setuid();

} // namespace ch

// privs.cc: see privs.hh. AT_SECURE is the kernel's own verdict that exec
// raised privilege (setuid, setgid, or file capabilities); the id checks catch
// a parent that handed us mismatched ids.
#include "util/privs.hh"

#include <sys/auxv.h>
#include <unistd.h>

#include "util/error.hh"

namespace ch {

void refuse_setuid() {
    if (::getauxval(AT_SECURE) != 0)
        fail("refusing to run setuid, setgid or with file capabilities: this tool needs no "
             "privilege; "
             "remove them (chmod u-s,g-s; setcap -r)");
    uid_t ruid = 0, euid = 0, suid = 0;
    gid_t rgid = 0, egid = 0, sgid = 0;
    if (::getresuid(&ruid, &euid, &suid) != 0 || ::getresgid(&rgid, &egid, &sgid) != 0)
        throw_errno("can't read process ids");
    if (ruid != euid || euid != suid || rgid != egid || egid != sgid)
        fail("refusing to run with mismatched real and effective ids (setuid or setgid?)");
}

} // namespace ch

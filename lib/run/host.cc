// host.cc: see host.hh. No NSS lookups: they would reach LDAP or SSSD once
// per MPI rank.
#include "run/host.hh"

#include <cstdio>
#include <cstdlib>

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include "run/pmix.hh"
#include "util/error.hh"

namespace ch::run {

namespace {

// The full name and group name only decorate the container's passwd and
// group files, so they come from the host's files, not NSS: at LDAP or SSSD
// sites a lookup per MPI rank would load the directory servers and slow every
// start. Users known only to the directory get an empty full name and, for
// an unknown group, the user's name as group name.
void read_local_names(HostFacts& h) {
    if (FILE* f = std::fopen("/etc/passwd", "re")) {
        while (const struct passwd* pw = ::fgetpwent(f))
            if (pw->pw_uid == h.euid) {
                h.gecos = pw->pw_gecos != nullptr ? pw->pw_gecos : "";
                break;
            }
        std::fclose(f);
    }
    if (FILE* f = std::fopen("/etc/group", "re")) {
        while (const struct group* gr = ::fgetgrent(f))
            if (gr->gr_gid == h.egid) {
                h.group_name = gr->gr_name;
                break;
            }
        std::fclose(f);
    }
}

} // namespace

HostFacts probe_host(std::function<bool(const fs::path&)> image_has) {
    HostFacts h;
    h.euid = ::geteuid();
    h.egid = ::getegid();
    const char* user = std::getenv("USER");
    if (user == nullptr || *user == '\0')
        fail("$USER not set");
    h.user = user;
    if (const char* home = std::getenv("HOME"))
        h.home = home;
    const char* tmpdir = std::getenv("TMPDIR");
    h.tmpdir = tmpdir == nullptr || *tmpdir == '\0' ? "/tmp" : tmpdir;
    h.pmix_dirs = pmix_dirs_from_env();
    read_local_names(h);
    h.image_has = std::move(image_has);
    return h;
}

} // namespace ch::run

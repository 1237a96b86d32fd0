// probe.hh: can this kernel, for this user, do what ch-run needs? Each probe
// tries the real thing in a throw-away child process and, when it fails, says
// precisely why (a sysctl, a missing feature, a device mode) and how to fix it.
// Used by ch-checkns and by ch-run --feature.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace ch::run {

struct Check {
    std::string name; // what ch-run uses it for
    bool ok = false;
    std::string detail; // why not, and the fix
};

// Every check, in the order a user should fix them.
std::vector<Check> check_kernel();

// The sysctls that can switch user namespaces off, as read from /proc/sys
// ("" when absent), and what they say about a failure.
struct UsernsSysctls {
    bool is_root = false;
    std::string unprivileged_userns_clone; // kernel.unprivileged_userns_clone (Debian <= 10)
    std::string max_user_namespaces;       // user.max_user_namespaces
    std::string
        apparmor_restrict_unprivileged; // kernel.apparmor_restrict_unprivileged_userns (Ubuntu)
};

std::optional<std::string> explain_userns_failure(const UsernsSysctls& s);

// nullopt if it works, else why not.
std::optional<std::string> probe_user_namespaces();
std::optional<std::string> probe_overlayfs();
std::optional<std::string> probe_tmpfs_xattrs();
std::optional<std::string> probe_fuse();
// The device part of probe_fuse alone (no namespaces): whether this user can
// open /dev/fuse, and if not, why and the fix. Cheap enough for every
// SquashFS run of ch-run.
std::optional<std::string> fuse_device_problem();

} // namespace ch::run

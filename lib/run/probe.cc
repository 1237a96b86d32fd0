// probe.cc: see probe.hh. Like apply.cc, this file creates namespaces and
// mounts, but only in forked children that exit right away.
#include "run/probe.hh"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "run/apply.hh"
#include "util/child.hh"
#include "util/error.hh"
#include "util/fd.hh"

namespace ch::run {

namespace {

std::string read_sysctl(const char* path) {
    try {
        std::string s = read_file(path);
        while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
            s.pop_back();
        return s;
    } catch (const Error&) {
        return {};
    }
}

// In the child: the namespaces ch-run makes (the same code), with a private
// tmpfs at /tmp to play in.
void enter_sandbox() {
    const unsigned uid = ::geteuid();
    const unsigned gid = ::getegid();
    enter_namespaces({uid, uid}, {gid, gid});
    if (::mount("tmpfs", "/tmp", "tmpfs", 0, "size=1m") != 0)
        throw_errno("can't mount tmpfs");
}

std::string octal_mode(mode_t m) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
    return buf;
}

void mkdirs(std::initializer_list<const char*> dirs) {
    for (const char* d : dirs)
        if (::mkdir(d, 0700) != 0)
            throw_errno("can't mkdir ", d);
}

} // namespace

std::optional<std::string> probe_user_namespaces() {
    const auto err = run_in_child([] {
        enter_sandbox();
        mkdirs({"/tmp/root"});
        if (::mount("/tmp/root", "/tmp/root", nullptr, MS_BIND | MS_REC, nullptr) != 0)
            throw_errno("can't bind-mount");
        if (::chdir("/tmp/root") != 0 || ::syscall(SYS_pivot_root, ".", ".") != 0)
            throw_errno("can't pivot_root");
    });
    if (!err)
        return std::nullopt;
    UsernsSysctls sys;
    sys.is_root = ::geteuid() == 0;
    sys.unprivileged_userns_clone = read_sysctl("/proc/sys/kernel/unprivileged_userns_clone");
    sys.max_user_namespaces = read_sysctl("/proc/sys/user/max_user_namespaces");
    sys.apparmor_restrict_unprivileged =
        read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    return explain_userns_failure(sys).value_or(*err);
}

// The sysctls that disable user namespaces say more than EPERM or ENOSPC do.
std::optional<std::string> explain_userns_failure(const UsernsSysctls& s) {
    if (!s.is_root && s.unprivileged_userns_clone == "0")
        return "user namespaces are disabled for unprivileged users (sysctl "
               "kernel.unprivileged_userns_clone = 0; fix: sysctl -w "
               "kernel.unprivileged_userns_clone=1)";
    if (s.max_user_namespaces == "0")
        return "user namespaces are disabled (sysctl user.max_user_namespaces = 0; "
               "fix: sysctl -w user.max_user_namespaces=65536)";
    if (!s.is_root && s.apparmor_restrict_unprivileged == "1")
        return "AppArmor restricts unprivileged user namespaces (sysctl "
               "kernel.apparmor_restrict_unprivileged_userns = 1; fix: an AppArmor profile with "
               "'userns,' for ch-run, or set the sysctl to 0)";
    return std::nullopt;
}

std::optional<std::string> probe_overlayfs() {
    const auto err = run_in_child([] {
        enter_sandbox();
        mkdirs({"/tmp/l", "/tmp/u", "/tmp/w", "/tmp/m"});
        if (::mount("overlay", "/tmp/m", "overlay", 0,
                    "lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w,userxattr") != 0)
            throw_errno("can't mount overlayfs");
    });
    if (!err)
        return std::nullopt;
    return *err +
           " (unprivileged overlayfs needs Linux 5.11 or later; ch-run -W and --home need it)";
}

std::optional<std::string> probe_tmpfs_xattrs() {
    const auto err = run_in_child([] {
        enter_sandbox();
        const Fd fd = open_at(AT_FDCWD, "/tmp/x", O_WRONLY | O_CREAT, 0600);
        if (::fsetxattr(fd.get(), "user.ch", "1", 1, 0) != 0)
            throw_errno("can't set a user.* xattr on tmpfs");
    });
    if (!err)
        return std::nullopt;
    return *err + " (tmpfs supports user.* xattrs from Linux 6.6)";
}

std::optional<std::string> fuse_device_problem() {
    struct stat st {};

    if (::stat("/dev/fuse", &st) != 0)
        return "/dev/fuse is missing (fix, as root: modprobe fuse)";
    if (!S_ISCHR(st.st_mode))
        return "/dev/fuse is not a character device";
    const Fd fd = try_open_at(AT_FDCWD, "/dev/fuse", O_RDWR);
    if (!fd) {
        if (errno == EACCES || errno == EPERM)
            return cat("/dev/fuse is mode ", octal_mode(st.st_mode), " owned by uid ", st.st_uid,
                       ", so this user can't use it and SquashFS images can't be mounted "
                       "(fix, as root: chmod 0666 /dev/fuse; Debian's udev rules set 0666)");
        return cat("can't open /dev/fuse: ", std::strerror(errno));
    }
    return std::nullopt;
}

std::optional<std::string> probe_fuse() {
    if (auto problem = fuse_device_problem())
        return problem;
    const auto err = run_in_child([] {
        const uid_t uid = ::geteuid();
        const gid_t gid = ::getegid();
        enter_sandbox();
        // FUSE wants the descriptor opened inside the user namespace that
        // mounts it (fuse_fill_super compares the opener's credentials).
        const Fd dev = open_at(AT_FDCWD, "/dev/fuse", O_RDWR);
        const std::string opts =
            cat("fd=", dev.get(), ",rootmode=40000,user_id=", uid, ",group_id=", gid);
        if (::mount("ch-checkns", "/tmp", "fuse", MS_NOSUID | MS_NODEV | MS_RDONLY, opts.c_str()) !=
            0)
            throw_errno("can't mount FUSE in a user namespace");
        ::umount2("/tmp", MNT_DETACH);
    });
    if (!err)
        return std::nullopt;
    return *err + " (unprivileged FUSE mounts need Linux 4.18 or later)";
}

std::vector<Check> check_kernel() {
    std::vector<Check> out;
    auto add = [&](const char* name, const std::optional<std::string>& err) {
        out.push_back({name, !err.has_value(), err.value_or("")});
    };
    const auto userns = probe_user_namespaces();
    add("user and mount namespaces, bind mounts, pivot_root (ch-run)", userns);
    if (userns) {
        const std::string why = "needs user namespaces";
        for (const char* n : {"overlayfs (ch-run -W, --home)", "user xattrs on tmpfs (-W)",
                              "FUSE in a user namespace (SquashFS images)"})
            out.push_back({n, false, why});
        return out;
    }
    add("overlayfs (ch-run -W, --home)", probe_overlayfs());
    add("user xattrs on tmpfs (-W)", probe_tmpfs_xattrs());
    add("FUSE in a user namespace (SquashFS images)", probe_fuse());
    return out;
}

} // namespace ch::run

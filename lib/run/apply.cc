// apply.cc: the only code in lib/run that calls unshare, mount, umount2,
// pivot_root or writes the id maps. Every decision was made in plan.cc; this
// file carries a Plan out in order and names the paths in every error.
//
// Paths are handled through O_PATH descriptors and mounted via
// /proc/self/fd/N, so a symlink in a hostile image can't redirect a mount:
// destinations are resolved inside the new root (util/fd.cc).
#include "run/apply.hh"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "run/inject.hh"
#include "storage/layout.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

namespace ch::run {

namespace {

void write_proc_self(const char* file, const std::string& content) {
    const Fd fd = open_at(AT_FDCWD, cat("/proc/self/", file), O_WRONLY);
    if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()))
        throw_errno("can't write /proc/self/", file, " (", content.substr(0, content.size() - 1),
                    ")");
}

void bind_mount(const std::string& src_proc, const std::string& dst_proc, const std::string& src,
                const std::string& dst, unsigned long flags = MS_REC) {
    if (::mount(src_proc.c_str(), dst_proc.c_str(), nullptr, MS_BIND | flags, nullptr) != 0)
        throw_errno("can't bind ", src, " to ", dst);
}

// Mount flags that an unprivileged remount must keep: the kernel locks them
// on mounts inherited from a more privileged namespace, and EPERM follows if
// a remount tries to clear one.
unsigned long locked_flags(int fd) {
    struct statvfs sv {};

    if (::fstatvfs(fd, &sv) != 0)
        throw_errno("can't statvfs the image");
    unsigned long flags = 0;
    const std::pair<unsigned long, unsigned long> map[] = {
        {ST_NOSUID, MS_NOSUID},   {ST_NODEV, MS_NODEV},           {ST_NOEXEC, MS_NOEXEC},
        {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
    };
    for (const auto& [st, ms] : map)
        if (sv.f_flag & st)
            flags |= ms;
    return flags;
}

// ch-run's private scratch space: a tmpfs mounted over the image directory in
// our own mount namespace (the image stays reachable through image_fd). It
// holds the new root's mount point, the passwd/group files and, for -W, the
// overlay's upper and work directories. It disappears with the namespace.
Fd mount_scratch(const Plan& plan, const Fd& image_fd) {
    const std::string opts = cat("mode=0700,size=", plan.overlay_size.value_or("8m"));
    if (::mount("tmpfs", image_fd.proc_path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                opts.c_str()) != 0)
        throw_errno("can't mount tmpfs for ch-run's scratch space (", opts, ")");
    // The path walk, unlike the magic link, goes through the new mount. What
    // it finds must be that mount: a tmpfs of our own, on top of the image.
    Fd scratch = open_at(AT_FDCWD, plan.image, O_PATH | O_DIRECTORY);

    struct statfs sf {};

    struct stat st {};

    if (::fstatfs(scratch.get(), &sf) != 0 || sf.f_type != TMPFS_MAGIC ||
        ::fstat(scratch.get(), &st) != 0 || st.st_uid != plan.uid.inside ||
        mount_id(scratch.get()) == mount_id(image_fd.get()))
        fail("can't set up scratch space: ", plan.image.string(), " changed during setup");
    for (const char* d : {"root", "files", "lower", "upper", "work"}) {
        if (!plan.overlay_size && std::string_view(d) == "lower")
            break; // the last three are the overlay's
        if (::mkdirat(scratch.get(), d, 0700) != 0)
            throw_errno("can't create scratch directory ", d);
    }
    return scratch;
}

Fd open_dir_at(const Fd& dir, const char* name) {
    return open_at(dir.get(), name, O_PATH | O_DIRECTORY);
}

// The image becomes scratch/root: a bind (read-only unless -w), or with -W an
// overlay whose writes go to the tmpfs. Returns the new root.
//
// Not MS_REC: the scratch tmpfs is itself mounted on the image directory, and
// a recursive bind would carry it along on top of the new root.
//
// --inject's ld.so.cache is written into the upper layer here, before the
// overlay exists, when the image's /etc allows (ld_cache_written): it then
// hides the image's own with no bind and no copy-up.
Fd mount_root(const Plan& plan, const Fd& image_fd, const Fd& scratch, bool& ld_cache_written) {
    const Fd mp = open_dir_at(scratch, "root");
    if (!plan.overlay_size) {
        bind_mount(image_fd.proc_path(), mp.proc_path(), plan.image.string(), "the new root", 0);
    } else {
        bind_mount(image_fd.proc_path(), open_dir_at(scratch, "lower").proc_path(),
                   plan.image.string(), "the overlay's lower layer", 0);
        // Reopened: a descriptor from before the bind names the empty
        // directory under it, and overlayfs would take that as its lower layer.
        const Fd lower = open_dir_at(scratch, "lower");
        const Fd upper = open_dir_at(scratch, "upper");
        const Fd work = open_dir_at(scratch, "work");
        for (const auto& path : plan.upper_paths)
            prepare_upper(lower.get(), upper.get(), path);
        for (const auto& step : plan.steps)
            if (const auto* c = std::get_if<WriteLdCache>(&step))
                ld_cache_written = write_upper_ld_cache(lower.get(), upper.get(), c->libs);
        // userxattr: unprivileged overlayfs keeps its metadata in user.*
        // xattrs (Linux 5.11). No "volatile": it saves nothing on a tmpfs
        // upper layer and turns ENOSPC into EIO. Paths go through
        // /proc/self/fd: the image path may hold ',' or ':', which the option
        // parser would split on.
        const std::string opts =
            cat("lowerdir=", lower.proc_path(), ",upperdir=", upper.proc_path(),
                ",workdir=", work.proc_path(), ",userxattr");
        if (::mount("overlay", mp.proc_path().c_str(), "overlay", 0, opts.c_str()) != 0)
            throw_errno("can't mount overlayfs for -W on ", plan.image.string(),
                        " (run ch-checkns to see if this kernel allows it)");
    }
    Fd root = open_dir_at(scratch, "root"); // now the mounted root, not the directory under it
    // A SquashFS image is already read-only: mount_squash mounted it so, and
    // a bind keeps the flags of its source (its statvfs would only be a
    // round trip to the FUSE server).
    if (!plan.writable_root() && !plan.squash) {
        const unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(root.get());
        if (::mount(nullptr, root.proc_path().c_str(), nullptr, flags, nullptr) != 0)
            throw_errno("can't remount image ", plan.image.string(), " read-only");
    }
    return root;
}

// Why an optional step is skipped, at -v: the image or the host lacks it, or
// the image has something unusable there, which is no reason to fail a run.
bool is_skippable(int err) {
    return err == ENOENT || err == ENOTDIR || err == ELOOP || err == EACCES;
}

// A missing path is the common case (most hosts lack the Cray paths, most
// images /etc/machine-id): only at -vv. Something unusable there is worth a
// note at -v.
void note_skip(const fs::path& dst, int err, const std::string& where) {
    const auto level = err == ENOENT ? log::Level::debug : log::Level::verbose;
    if (log::enabled(level))
        log::verbose("skipping optional ", dst.string(), ": ", where, ": ", std::strerror(err));
}

// Resolve dst inside the new root; nullopt means "skip this optional step".
// An existing destination is used wherever it resolves; a missing one is
// created only on the root's own mount (make_in_root), never through a bind.
std::optional<Fd> find_dst(const Fd& root, const fs::path& dst, Need need, bool is_file,
                           const std::string& what) {
    Fd fd = resolve_in_root(root.get(), dst.string());
    if (fd)
        return fd;
    const int err = errno;
    if (need == Need::optional && is_skippable(err)) {
        note_skip(dst, err, "destination in the image");
        return std::nullopt;
    }
    if (err != ENOENT)
        throw SysError(err, cat(what, ": ", dst.string()));
    if (need == Need::make_dst) {
        try {
            return make_in_root(root.get(), dst.string(), is_file);
        } catch (SysError& e) {
            // Overlayfs can't copy up a directory whose owner has no id in
            // our one-line map; the kernel says EOVERFLOW, which helps nobody.
            if (e.err() == EOVERFLOW || e.err() == EACCES)
                e.add_context(cat(what, ": image directories on the way are owned by another user, "
                                        "so they can't be written even with -W"));
            else
                e.add_context(what);
            throw;
        } catch (Error& e) { // would cross a mount
            throw Error(cat(what, ": ", e.what(), " (ch-run creates nothing outside the image)"));
        }
    }
    fail(what, ": destination ", dst.string(),
         " not found in the image (the image is read-only; "
         "-W creates missing destinations in a writable overlay)");
}

// Carries out one step of the plan; std::visit needs every kind handled here.
class StepRunner {
public:
    StepRunner(const Fd& root, const Fd& scratch, bool ld_cache_written)
        : root_(root)
        , scratch_(scratch)
        , ld_cache_written_(ld_cache_written) {}

    void operator()(const WriteFile& w) {
        const std::string what = cat("can't bind a generated file to ", w.dst.string());
        const Fd files = open_dir_at(scratch_, "files");
        const std::string name = cat(serial_++);
        {
            const Fd out = open_at(files.get(), name, O_WRONLY | O_CREAT | O_EXCL, 0644);
            write_all(out.get(), w.content, w.dst.string());
        }
        const Fd src = open_at(files.get(), name, O_PATH);
        const auto dst = find_dst(root_, w.dst, w.need, true, what);
        if (!dst)
            return;
        bind_mount(src.proc_path(), dst->proc_path(), "a generated file", w.dst.string());
        log::verbose("write ", w.dst.string());
    }

    void operator()(const WriteLdCache& c) {
        if (ld_cache_written_) {
            log::verbose("write /etc/ld.so.cache (in the writable layer)");
            return;
        }
        const auto image_cache = read_image_ld_cache(root_.get());
        unlink_ld_cache_symlink(root_.get());
        const auto image_bytes = image_cache ? std::optional(image_cache->view()) : std::nullopt;
        (*this)(
            WriteFile{"/etc/ld.so.cache", merged_ld_cache(c.libs, image_bytes), Need::make_dst});
    }

    void operator()(const SealScratch&) {
        if (::mount(nullptr, scratch_.proc_path().c_str(), nullptr, MS_UNBINDABLE, nullptr) != 0)
            throw_errno("can't make ch-run's scratch space unbindable");
        log::debug("sealed scratch space");
    }

    void operator()(const Bind& b) {
        const std::string what = cat("can't bind ", b.src.string(), " to ", b.dst.string());
        const Fd src = try_open_at(AT_FDCWD, b.src, O_PATH);
        if (!src) {
            const int err = errno;
            if (b.need == Need::optional && is_skippable(err))
                return note_skip(b.dst, err, cat("source ", b.src.string()));
            throw_errno(what);
        }

        struct stat st {};

        if (::fstat(src.get(), &st) != 0)
            throw_errno(what);
        const auto dst = find_dst(root_, b.dst, b.need, !S_ISDIR(st.st_mode), what);
        if (!dst)
            return;
        // A file onto a directory or the reverse: ENOTDIR.
        if (::mount(src.proc_path().c_str(), dst->proc_path().c_str(), nullptr, MS_BIND | MS_REC,
                    nullptr) != 0) {
            const int err = errno;
            if (b.need == Need::optional && is_skippable(err))
                return note_skip(b.dst, err, "destination in the image");
            throw_errno(what);
        }
        log::verbose("bind ", b.src.string(), " -> ", b.dst.string());
    }

    void operator()(const Tmpfs& t) {
        const std::string what = cat("can't mount tmpfs on ", t.dst.string());
        const auto dst = find_dst(root_, t.dst, Need::required, false, what);
        if (::mount("tmpfs", dst->proc_path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                    t.options.c_str()) != 0)
            throw_errno(what);
        log::verbose("tmpfs -> ", t.dst.string());
    }

private:
    const Fd& root_;
    const Fd& scratch_;
    bool ld_cache_written_ = false;
    int serial_ = 0; // names of generated files in scratch/files
};

// A SquashFS image: FUSE on the mount point, in our new mount namespace
// only, so nothing is ever mounted on the host and the kernel removes the
// mount with the namespace, when the container's last process exits.
//
// /dev/fuse is opened here, after unshare: fuse_fill_super refuses (EINVAL) a
// descriptor opened in another user namespace than the mounter's. user_id and
// group_id are ids in this namespace; only processes with them may use the
// mount (no allow_other), and default_permissions lets the kernel check mode
// bits. Until hand_over returns, nothing may touch the mount: the first
// access waits for the server's answer to FUSE_INIT.
//
// The mount point is opened once and mounted on through that descriptor. In
// storage (the default), STORAGE and then mnt in it are opened without
// following symlinks and checked to be the user's own through those same
// descriptors, so nobody can swap either between the check and the mount.
// Returns the mounted image's root.
Fd mount_squash(const SquashMount& sq, const IdMap& uid, const IdMap& gid,
                const FuseHandOver& hand_over) {
    const std::string file = sq.file.string();
    const std::string what = cat("can't mount ", file, " on ", sq.mount_dir.string());
    Fd dev = try_open_at(AT_FDCWD, "/dev/fuse", O_RDWR);
    if (!dev)
        throw_errno_code(Exit::squash, "can't mount ", file, ": can't open /dev/fuse");
    Fd parent; // STORAGE, when mounting on STORAGE/mnt
    Fd mp;
    try {
        if (sq.storage) {
            parent = storage::open_trusted_dir(AT_FDCWD, *sq.storage, *sq.storage, uid.inside);
            mp = storage::open_trusted_dir(parent.get(), sq.mount_dir.filename(), sq.mount_dir,
                                           uid.inside);
        } else {
            mp = open_at(AT_FDCWD, sq.mount_dir, O_PATH | O_DIRECTORY);
        }
    } catch (Error& e) {
        e.set_exit_code(Exit::squash);
        throw;
    }
    const std::string opts = cat("fd=", dev.get(), ",rootmode=40000,user_id=", uid.inside,
                                 ",group_id=", gid.inside, ",default_permissions");
    // The type names our server (squash_server_name), so /proc/self/mounts
    // and findmnt say what serves the image; not squashfuse, which doesn't.
    log::verbose("mount ", file, " on ", sq.mount_dir.string(), " (fuse.ch-squashfuse ", opts, ")");
    if (::mount(file.c_str(), mp.proc_path().c_str(), "fuse.ch-squashfuse",
                MS_RDONLY | MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
        throw_errno_code(Exit::squash, what);
    hand_over(std::move(dev));
    // A descriptor names what is under a mount, so the new root is reached by
    // a walk, which must end on another mount than the directory under it.
    Fd root = sq.storage ? try_open_at(parent.get(), sq.mount_dir.filename(),
                                       O_PATH | O_DIRECTORY | O_NOFOLLOW)
                         : try_open_at(AT_FDCWD, sq.mount_dir, O_PATH | O_DIRECTORY);
    if (!root)
        throw_errno_code(Exit::squash, what);
    if (mount_id(root.get()) == mount_id(mp.get()))
        throw Error(cat(what, ": the mount point changed during setup"), Exit::squash);
    return root;
}

// pivot_root(".", ".") stacks the old root on top of the new one, and the
// detach removes it (pivot_root(2), NOTES). It fails with EINVAL when the
// host root is initramfs (rootfs can't be unmounted), as on some diskless
// compute nodes; there, moving the new root over "/" and chroot is the way.
void pivot_into(const Fd& root) {
    if (::fchdir(root.get()) != 0)
        throw_errno("can't enter the new root");
    if (::syscall(SYS_pivot_root, ".", ".") == 0) {
        if (::umount2(".", MNT_DETACH) != 0)
            throw_errno("can't detach the old root");
    } else if (errno == EINVAL) {
        if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0)
            throw_errno("can't move the new root over /");
        if (::chroot(".") != 0)
            throw_errno("can't chroot into the new root");
    } else {
        throw_errno("can't pivot_root into the new root");
    }
    if (::chdir("/") != 0)
        throw_errno("can't chdir to / in the container");
}

} // namespace

// One-line maps: the container id maps to the invoking id and nothing else,
// so no other host user's files can be owned or impersonated. setgroups must
// be denied before an unprivileged process may write gid_map (user_namespaces(7)).
void enter_namespaces(const IdMap& uid, const IdMap& gid, std::string_view hint) {
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
        throw_errno("can't create user and mount namespaces", hint);
    write_proc_self("setgroups", "deny\n");
    write_proc_self("uid_map", cat(uid.inside, " ", uid.outside, " 1\n"));
    write_proc_self("gid_map", cat(gid.inside, " ", gid.outside, " 1\n"));
    // Nothing done below may propagate back to the host's mounts.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        throw_errno("can't make mounts private");
}

void apply(const Plan& plan, const FuseHandOver& hand_over) {
    enter_namespaces(plan.uid, plan.gid, " (run ch-checkns to see why)");
    // Opened after unshare: a descriptor from the old namespace names a mount
    // that is not in ours, and bind mounts from it fail with EINVAL.
    const Fd image_fd = plan.squash ? mount_squash(*plan.squash, plan.uid, plan.gid, hand_over)
                                    : open_at(AT_FDCWD, plan.image, O_PATH | O_DIRECTORY);
    const Fd scratch = mount_scratch(plan, image_fd);
    bool ld_cache_written = false;
    const Fd root = mount_root(plan, image_fd, scratch, ld_cache_written);
    StepRunner run_step(root, scratch, ld_cache_written);
    for (const auto& step : plan.steps)
        std::visit(run_step, step);
    pivot_into(root);
}

void join_namespaces(const Fd& user, const Fd& mnt) {
    if (::setns(user.get(), CLONE_NEWUSER) != 0)
        throw_errno("can't join the container's user namespace");
    if (::setns(mnt.get(), CLONE_NEWNS) != 0)
        throw_errno("can't join the container's mount namespace");
}

void drop_privileges() {
    // Each capability must leave the bounding set one by one; stop at the
    // first the kernel does not know.
    for (int cap = 0; cap <= 63; cap++) {
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
            continue;
        if (errno == EINVAL)
            break;
        throw_errno("can't drop capability ", cap, " from the bounding set");
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        throw_errno("can't clear ambient capabilities");

    struct __user_cap_header_struct hdr {};

    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    struct __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capset, &hdr, data) != 0)
        throw_errno("can't drop capabilities");
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        throw_errno("can't set no_new_privs");
}

} // namespace ch::run

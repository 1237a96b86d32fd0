// plan.cc: see plan.hh. Pure: no system calls, so each option combination can
// be checked step by step in test/unit/run/plan_test.cc.
#include "run/plan.hh"

#include "run/passwd.hh"
#include "storage/layout.hh"
#include "util/error.hh"
#include "util/fd.hh"

namespace ch::run {

const std::vector<DefaultBind>& default_binds() {
    static const std::vector<DefaultBind> binds = {
        {"/dev", true},
        {"/proc", true},
        {"/sys", true},
        {"/etc/hosts", false},
        {"/etc/machine-id", false},
        {"/etc/resolv.conf", false},
        {"/var/lib/hugetlbfs", false},
        // Cray: workload manager detection, ALPS, and the interconnect's
        // user-space drivers, which MPI inside the container needs.
        {"/var/opt/cray/alps/spool", false},
        {"/etc/opt/cray/wlm_detect", false},
        {"/opt/cray/wlm_detect", false},
        {"/opt/cray/alps", false},
        {"/opt/cray/udreg", false},
        {"/opt/cray/ugni", false},
        {"/opt/cray/xpmem", false},
        {"/var/spool/slurmd", false},
    };
    return binds;
}

const std::vector<const char*>& pmix_dir_vars() {
    static const std::vector<const char*> vars = {
        "PMIX_SERVER_TMPDIR",       // the server's own rendezvous directory
        "PMIX_SYSTEM_TMPDIR",       // the node-wide one
        "PMIX_DSTORE_21_BASE_PATH", // the shared-memory data store (gds/ds21)
        "PMIX_DSTORE_ESH_BASE_PATH",
    };
    return vars;
}

namespace {

// Whether an earlier step already shows host path dir at the same path:
// /dev (so /dev/shm), or /tmp when it is the host's /tmp.
bool visible_at_same_path(const std::vector<Step>& steps, const fs::path& dir) {
    for (const auto& s : steps)
        if (const auto* b = std::get_if<Bind>(&s);
            b != nullptr && b->need == Need::required && b->src == b->dst &&
            (dir == b->src || starts_with(dir.string(), b->src.string() + "/")))
            return true;
    return false;
}

// A --bind destination: absolute, not "/", and no ".." that climbs above /.
fs::path check_bind_dst(const BindSpec& b) {
    const std::string dst = b.dst.string();
    if (dst.empty() || dst[0] != '/')
        throw UsageError(cat("can't bind ", b.src.string(), " to ", dst,
                             ": destination must be an absolute path"));
    int depth = 0;
    for (const auto& c : split(dst, '/')) {
        if (c == "..")
            depth--;
        else if (!c.empty() && c != ".")
            depth++;
        if (depth < 0)
            throw UsageError(
                cat("can't bind ", b.src.string(), " to ", dst, ": destination escapes the image"));
    }
    const std::string norm = normalize_abs(dst);
    if (norm == "/")
        throw UsageError(cat("can't bind ", b.src.string(), " to ", dst,
                             ": destination can't be the image root"));
    return norm;
}

} // namespace

Plan make_plan(const RunOptions& opts, const fs::path& image_dir, const HostFacts& host) {
    Plan p;
    p.image = image_dir;
    p.uid = {opts.uid.value_or(host.euid), host.euid};
    p.gid = {opts.gid.value_or(host.egid), host.egid};
    p.write = opts.write;
    p.overlay_size = opts.write_fake;
    p.cwd = opts.cd.value_or("/");

    const std::string home_dst = "/home/" + host.user;
    if (opts.home) {
        if (!host.home || host.home->empty())
            throw UsageError("--home: $HOME not set");
        // Charliecloud always adds -W for --home; we add it only when
        // /home/$USER must be created and the image is read-only.
        if (!p.writable_root() && !(host.image_has && host.image_has(home_dst)))
            p.overlay_size = write_fake_default_size;
    }
    if (host.injection) {
        // Destinations of injected files are made in a throw-away layer,
        // never in the image.
        if (p.write)
            throw UsageError("--inject can't be used with --write: injected files are bound into "
                             "a throw-away layer (-W), never into the image");
        if (!p.overlay_size)
            p.overlay_size = write_fake_default_size;
        p.upper_paths = host.injection->upper_paths;
    }
    const Need need_dst = p.writable_root() ? Need::make_dst : Need::required;

    if (!opts.no_passwd) {
        Account acct{p.uid.inside, p.gid.inside,
                     host.user,    host.group_name.empty() ? host.user : host.group_name,
                     host.gecos,   home_dst};
        p.steps.emplace_back(WriteFile{"/etc/passwd", make_passwd(acct), need_dst});
        p.steps.emplace_back(WriteFile{"/etc/group", make_group(acct), need_dst});
    }
    if (host.injection && !host.injection->libs.empty())
        p.steps.emplace_back(WriteLdCache{host.injection->libs});
    p.steps.emplace_back(SealScratch{});

    for (const auto& d : default_binds())
        p.steps.emplace_back(Bind{d.path, d.path, d.required ? Need::required : Need::optional});

    if (opts.private_tmp)
        p.steps.emplace_back(Tmpfs{"/tmp", "mode=1777"});
    else
        p.steps.emplace_back(Bind{host.tmpdir, "/tmp", need_dst});

    for (const auto& dir : host.pmix_dirs) {
        if (visible_at_same_path(p.steps, dir))
            continue;
        // Optional even with -W: creating the path could fail on directories
        // of the image that another user owns. Where it is skipped, the
        // command reaches the directory through a descriptor (pmix.hh).
        p.steps.emplace_back(Bind{dir, dir, Need::optional});
    }

    for (const auto& b : opts.site_bind) {
        fs::path dst;
        try {
            dst = check_bind_dst(b.bind);
        } catch (const UsageError& e) { // not the command line's fault
            throw Error(cat(b.origin, ": ", e.what()));
        }
        p.steps.emplace_back(Bind{b.bind.src, dst, b.optional ? Need::optional : need_dst});
    }

    if (opts.home)
        p.steps.emplace_back(
            Bind{*host.home, home_dst, p.writable_root() ? Need::make_dst : Need::required});

    if (host.injection)
        for (const auto& b : host.injection->binds)
            p.steps.emplace_back(b);

    for (const auto& b : opts.bind)
        p.steps.emplace_back(Bind{b.src, check_bind_dst(b), need_dst});
    return p;
}

Plan make_squash_plan(const RunOptions& opts, const fs::path& file, const fs::path& storage,
                      const HostFacts& host) {
    const fs::path mount_dir = opts.mount ? *opts.mount : storage::mount_dir(storage);
    RunOptions ro = opts;
    ro.write = false; // FUSE serves it read-only: nothing could be created in it
    if (opts.write && opts.home && !opts.write_fake && host.user.size() > 0 &&
        !(host.image_has && host.image_has("/home/" + host.user)))
        fail("can't use --home with -w on SquashFS image ", file.string(), ": /home/", host.user,
             " must be created and the image is read-only (without -w, --home adds a writable "
             "layer, -W)");
    Plan p = make_plan(ro, mount_dir, host);
    p.squash = SquashMount{file, mount_dir, opts.mount ? std::nullopt : std::optional(storage)};
    return p;
}

namespace {
const char* need_name(Need n) {
    switch (n) {
    case Need::required:
        return "required";
    case Need::optional:
        return "optional";
    case Need::make_dst:
        return "create destination";
    }
    return "?";
}
} // namespace

std::string describe(const Step& s) {
    return std::visit(
        [](const auto& st) -> std::string {
            using T = std::decay_t<decltype(st)>;
            if constexpr (std::is_same_v<T, Bind>)
                return cat("bind ", st.src.string(), " -> ", st.dst.string(), " (",
                           need_name(st.need), ")");
            else if constexpr (std::is_same_v<T, Tmpfs>)
                return cat("tmpfs -> ", st.dst.string(), " (", st.options, ")");
            else if constexpr (std::is_same_v<T, WriteFile>)
                return cat("write ", st.dst.string(), " (", st.content.size(), " bytes, ",
                           need_name(st.need), ")");
            else if constexpr (std::is_same_v<T, WriteLdCache>)
                return cat("write /etc/ld.so.cache (the image's, with ", st.libs.size(),
                           " injected libraries first; create destination)");
            else if constexpr (std::is_same_v<T, SealScratch>)
                return "seal scratch space (unbindable from here on)";
            else
                static_assert(sizeof(T) == 0, "describe: a step kind is not handled");
        },
        s);
}

std::string describe(const Plan& p) {
    std::string out = cat("uid map: ", p.uid.inside, " ", p.uid.outside, " 1\n",
                          "gid map: ", p.gid.inside, " ", p.gid.outside, " 1\n",
                          p.squash ? cat("squash: mount ", p.squash->file.string(), " on ",
                                         p.squash->mount_dir.string(), " (FUSE, read-only",
                                         p.squash->storage ? ", storage checked" : "", ")\n")
                                   : std::string(),
                          "image: ", p.image.string(),
                          p.overlay_size ? cat(" (overlay on tmpfs size=", *p.overlay_size, ")")
                                         : std::string(p.write ? " (writable)" : " (read-only)"),
                          "\n");
    if (!p.upper_paths.empty())
        out += cat("made in the overlay's upper layer: /", join(p.upper_paths, " /"), "\n");
    for (const auto& s : p.steps)
        out += describe(s) + "\n";
    out += "cd " + p.cwd;
    return out;
}

} // namespace ch::run

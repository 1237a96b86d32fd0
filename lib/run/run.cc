// run.cc: ch-run's steps, in order: resolve the image, learn about the host
// (host.cc), plan (plan.cc), apply (apply.cc), then environment and exec
// (exec.cc). For a SquashFS image, a FUSE server process (squash.hh) serves
// the image beside the command.
#include "run/run.hh"

#include <fcntl.h>
#include <sys/stat.h>

#include "image/image.hh"
#include "image/squash_serve.hh"
#include "run/apply.hh"
#include "run/env.hh"
#include "run/exec.hh"
#include "run/host.hh"
#include "run/inject.hh"
#include "run/join.hh"
#include "run/plan.hh"
#include "run/pmix.hh"
#include "run/probe.hh"
#include "run/site.hh"
#include "run/squash.hh"
#include "storage/layout.hh"
#include "util/config.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

extern char** environ;

namespace ch::run {

namespace {

constexpr const char* no_cma_var = "OMPI_MCA_btl_vader_single_copy_mechanism";

std::vector<std::string> host_environment() {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; e++)
        env.emplace_back(*e);
    return env;
}

// Inside the container: the PMIx variables rewritten for directories the
// container does not show at their own path (pmix.hh).
void reach_pmix(PmixDirs& pmix, RunOptions& opts) {
    for (auto& v : pmix.reach(host_environment()))
        opts.site_env_set.push_back(std::move(v));
}

// -vv prints the plan; describing it is work, so only then.
void debug_plan(const Plan& plan) {
    if (log::enabled(log::Level::debug))
        log::debug("plan:\n", describe(plan));
}

// Opens the image only if asked (--home asks; most runs don't).
std::function<bool(const fs::path&)> dir_has(const fs::path& image_dir) {
    return [image_dir](const fs::path& p) {
        const Fd image_fd = open_at(AT_FDCWD, image_dir, O_PATH | O_DIRECTORY);
        return static_cast<bool>(resolve_in_root(image_fd.get(), p.string()));
    };
}

// --inject reads the configuration and the injected libraries' headers;
// without it, nothing of that happens.
// The configuration files, read once per ch-run however many parts ask.
const config::Config& loaded_config() {
    static const config::Config cfg = config::Config::load();
    return cfg;
}

HostFacts with_injection(const RunOptions& opts, HostFacts host) {
    if (opts.inject)
        host.injection = prepare_injection(loaded_config(), *opts.inject);
    return host;
}

// The SquashFS mount point: -m DIR must exist (Charliecloud's rule); the
// default STORAGE/mnt is created (0700), with STORAGE if need be, and must be
// the user's own (apply checks it again through the descriptor it mounts on).
// Each ch-run mounts in its own mount namespace, so any number of them can
// share one mount point.
void check_mount_dir(const RunOptions& opts, const fs::path& storage, const fs::path& image) {
    if (!opts.mount) {
        try {
            storage::prepare_mount_dir(storage);
        } catch (Error& e) {
            e.set_exit_code(Exit::squash);
            e.add_context(cat("can't mount ", image.string()));
            throw;
        }
        return;
    }
    const std::string what = cat("can't mount ", image.string(), " on ", opts.mount->string());

    struct stat st {};

    if (::stat(opts.mount->c_str(), &st) != 0)
        throw_errno_code(Exit::squash, what);
    if (!S_ISDIR(st.st_mode))
        throw Error(cat(what, ": not a directory"), Exit::squash);
}

// A SquashFS image: everything that can fail for the image, the mount point
// or /dev/fuse fails here, before any namespace is made (exit 84). Then the
// FUSE server starts (before unshare), apply mounts and hands it /dev/fuse,
// and the rest is as for a directory image: ch-run becomes the command.
[[noreturn]] void run_squash(const RunOptions& opts, const image::Image& img,
                             const fs::path& storage, const std::function<void()>& built) {
    image::SquashFile file = image::SquashFile::open(img.ref);
    if (opts.write)
        log::warning("--write has no effect on SquashFS image ", img.ref,
                     ", which is read-only (-W gives a throw-away writable layer)");
    if (auto problem = fuse_device_problem())
        throw Error(cat("can't mount ", img.ref, ": ", *problem), Exit::squash);
    // --home asks the image whether /home/$USER exists: the file answers.
    auto image_has = [&file](const fs::path& p) {
        return file.has(p.string());
    };
    const Plan plan =
        make_squash_plan(opts, img.path, storage, with_injection(opts, probe_host(image_has)));
    check_mount_dir(opts, storage, img.ref);
    debug_plan(plan);
    // The command's PATH as exec_command will have it, near enough for a
    // guess (the environment options may still change it).
    const char* host_path = std::getenv("PATH");
    SquashServer server =
        SquashServer::start(file, plan.uid.inside, plan.gid.inside, opts.command.at(0),
                            fix_path(host_path ? host_path : ""));
    apply(plan, [&server](Fd dev) { server.hand_over(std::move(dev)); });
    built();
    enter_command(opts, plan);
}

JoinSpec join_spec(const RunOptions& opts) {
    const EnvLookup env = [](const char* name) {
        return std::getenv(name);
    };
    JoinSpec spec;
    spec.count = opts.join_ct ? *opts.join_ct : default_join_count(env);
    spec.tag = opts.join_tag ? *opts.join_tag : default_join_tag(env, ::getppid());
    spec.timeout = opts.join_timeout.value_or(join_timeout_default);
    return spec;
}

// A peer that entered an existing container (--join, --join-pid) needs of
// the plan only where to start: everything else is the container's.
[[noreturn]] void enter_command_joined(const RunOptions& opts) {
    Plan plan;
    plan.cwd = opts.cd.value_or("/");
    enter_command(opts, plan);
}

// Everything but --join: resolve, plan, apply; built() runs once inside.
[[noreturn]] void build_and_enter(const RunOptions& opts, const std::function<void()>& built);

} // namespace

void run(const RunOptions& cli_opts) {
    RunOptions opts = cli_opts;
    apply_site_config(loaded_config(), opts);
    PmixDirs pmix = PmixDirs::open(pmix_dirs_from_env());
    // Cross-memory attach between ranks needs one user namespace: without
    // --join each rank has its own, so Open MPI's probe could only fail, with
    // a warning per rank. The site's or the user's setting wins.
    if (!opts.join && !opts.join_pid && std::getenv(no_cma_var) == nullptr)
        opts.site_env_set.insert(opts.site_env_set.begin(), {no_cma_var, "none"});
    if (opts.join_pid) {
        log::verbose("join: entering the container of pid ", *opts.join_pid);
        const JoinNamespaces ns = container_namespaces(*opts.join_pid);
        join_namespaces(ns.user, ns.mnt);
        reach_pmix(pmix, opts);
        enter_command_joined(opts);
    }
    std::optional<JoinGroup> group;
    if (opts.join) {
        const JoinSpec spec = join_spec(opts);
        group.emplace(JoinGroup::arrive(spec));
        if (!group->first()) {
            const JoinNamespaces ns = group->wait_for_container();
            log::verbose("join: entering the container of group ", spec.tag);
            join_namespaces(ns.user, ns.mnt);
            group->joined();
            reach_pmix(pmix, opts);
            enter_command_joined(opts);
        }
    }
    try {
        // build_and_enter's opts is this opts: what built() adds reaches the
        // command.
        build_and_enter(opts, [&] {
            if (group)
                group->publish_ready();
            reach_pmix(pmix, opts);
        });
    } catch (const std::exception& e) {
        if (group)
            group->publish_failed(e.what());
        throw;
    }
}

namespace {
void build_and_enter(const RunOptions& opts, const std::function<void()>& built) {
    const auto storage = storage::storage_dir(opts.storage);
    if (opts.storage && !fs::is_directory(storage.path))
        log::warning("storage directory not found: ", storage.path.string());
    const image::Image img = image::resolve_image(opts.image_ref, storage.path, opts.unsafe);
    log::verbose("image: ", img.path.string(), " (", image::kind_name(img.kind), ")");
    if (img.kind == image::Kind::name && opts.write && !opts.unsafe)
        fail("can't run ", img.ref,
             " with --write: images in storage are run read-only "
             "(use -W for a throw-away writable layer)");
    if (img.kind == image::Kind::squash) {
        run_squash(opts, img, storage.path, built);
    } else {
        if (opts.mount)
            log::warning("--mount is for SquashFS images; ignored for ", image::kind_name(img.kind),
                         " ", img.ref);
        const Plan plan =
            make_plan(opts, img.path, with_injection(opts, probe_host(dir_has(img.path))));
        debug_plan(plan);
        apply(plan);
        built();
        enter_command(opts, plan);
    }
}

} // namespace

} // namespace ch::run

// run.cc: ch-run's steps, in order. ch-run becomes the user's command (no
// supervisor), so signals and exit status are its own; for a SquashFS image,
// a FUSE server process (squash.hh) serves the image beside it.
#include "run/run.hh"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "image/image.hh"
#include "image/squash_serve.hh"
#include "run/apply.hh"
#include "run/env.hh"
#include "run/plan.hh"
#include "run/probe.hh"
#include "run/squash.hh"
#include "storage/layout.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

extern char** environ;

namespace ch::run {

namespace {

std::string getenv_str(const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
}

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

HostFacts probe_host(std::function<bool(const fs::path&)> image_has) {
    HostFacts h;
    h.euid = ::geteuid();
    h.egid = ::getegid();
    h.user = getenv_str("USER");
    if (h.user.empty())
        fail("$USER not set");
    if (const char* home = std::getenv("HOME"))
        h.home = home;
    const std::string tmpdir = getenv_str("TMPDIR");
    h.tmpdir = tmpdir.empty() ? "/tmp" : tmpdir;
    read_local_names(h);
    h.image_has = std::move(image_has);
    return h;
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

// The SquashFS mount point: -m DIR must exist (Charliecloud's rule); the
// default STORAGE/mnt is created, with the storage directory if need be.
// Each ch-run mounts in its own mount namespace, so any number of them can
// share one mount point.
fs::path prepare_mount_dir(const RunOptions& opts, const fs::path& storage, const fs::path& image) {
    fs::path dir = squash_mount_dir(opts, storage);
    const std::string what = cat("can't mount ", image.string(), " on ", dir.string());
    if (!opts.mount) {
        for (const fs::path& d : {storage, dir})
            if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST)
                throw_errno_code(Exit::squash, what);
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0)
        throw_errno_code(Exit::squash, what);
    if (!S_ISDIR(st.st_mode))
        throw Error(cat(what, ": not a directory"), Exit::squash);
    return dir;
}

std::vector<std::string> host_environment() {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; e++)
        env.emplace_back(*e);
    return env;
}

// After pivot_root: turn "--set-env" (no argument) into the variables of the
// image's /ch/environment, read inside the container.
std::vector<EnvDelta> resolve_image_env(const std::vector<EnvDelta>& deltas) {
    std::vector<EnvDelta> out;
    for (const auto& d : deltas) {
        if (d.kind != EnvDelta::Kind::image_file) {
            out.push_back(d);
            continue;
        }
        EnvDelta set;
        set.vars = parse_env_text(read_file("/ch/environment"), d.separator, "/ch/environment");
        out.push_back(std::move(set));
    }
    return out;
}

[[noreturn]] void exec_command(const RunOptions& opts, const EnvVars& env) {
    std::vector<std::string> env_strings;
    env_strings.reserve(env.size());
    for (const auto& [k, v] : env)
        env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_strings)
        envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<char*> argv;
    for (const auto& a : opts.command)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);

    if (opts.quiet >= 1) {
        const Fd null = open_at(AT_FDCWD, "/dev/null", O_WRONLY);
        if (::dup2(null.get(), STDOUT_FILENO) < 0 ||
            (opts.quiet >= 3 && ::dup2(null.get(), STDERR_FILENO) < 0))
            throw_errno("can't redirect output to /dev/null");
    }
    drop_privileges();
    // execvp searches the PATH of the calling process, so the new environment
    // must be in place first.
    environ = envp.data();
    ::execvp(argv[0], argv.data());
    throw_errno_code(Exit::cmd, "can't execve(2): ", printable(opts.command[0]));
}

// Inside the container: environment, working directory, exec.
[[noreturn]] void enter_command(const RunOptions& opts, const Plan& plan) {
    EnvInputs in;
    struct stat st {};
    in.home = opts.home ? "/home/" + getenv_str("USER") : (::stat("/root", &st) == 0 ? "/root" : "/");
    in.deltas = resolve_image_env(opts.env);
    in.no_expand = opts.env_no_expand;
    const EnvVars env = build_environment(host_environment(), in);
    if (::chdir(plan.cwd.c_str()) != 0)
        throw_errno("can't cd to ", plan.cwd);
    exec_command(opts, env);
}

// A SquashFS image: everything that can fail for the image, the mount point
// or /dev/fuse fails here, before any namespace is made (exit 84). Then the
// FUSE server starts (before unshare), apply mounts and hands it /dev/fuse,
// and the rest is as for a directory image: ch-run becomes the command.
[[noreturn]] void run_squash(const RunOptions& opts, const image::Image& img,
                             const fs::path& storage) {
    image::SquashFile file = image::SquashFile::open(img.ref);
    if (opts.write)
        log::warning("--write has no effect on SquashFS image ", img.ref,
                     ", which is read-only (-W gives a throw-away writable layer)");
    if (auto problem = fuse_device_problem())
        throw Error(cat("can't mount ", img.ref, ": ", *problem), Exit::squash);
    const fs::path mount_dir = prepare_mount_dir(opts, storage, img.ref);
    // --home asks the image whether /home/$USER exists: the file answers.
    auto image_has = [&file](const fs::path& p) { return file.has(p.string()); };
    const Plan plan = make_squash_plan(opts, img.path, mount_dir, probe_host(image_has));
    debug_plan(plan);
    SquashServer server = SquashServer::start(file, plan.uid.inside, plan.gid.inside);
    apply(plan, [&server](Fd dev) { server.hand_over(std::move(dev)); });
    enter_command(opts, plan);
}

} // namespace

void run(const RunOptions& opts) {
    const auto storage = storage::storage_dir(opts.storage);
    if (opts.storage && !fs::is_directory(storage.path))
        log::warning("storage directory not found: ", storage.path.string());
    const image::Image img = image::resolve_image(opts.image_ref, storage.path, opts.unsafe);
    log::verbose("image: ", img.path.string(), " (", image::kind_name(img.kind), ")");
    if (img.kind == image::Kind::name && opts.write && !opts.unsafe)
        fail("can't run ", img.ref, " with --write: images in storage are run read-only "
             "(use -W for a throw-away writable layer)");
    if (img.kind == image::Kind::squash) {
        run_squash(opts, img, storage.path);
    } else {
        if (opts.mount)
            log::warning("--mount is for SquashFS images; ignored for ", image::kind_name(img.kind),
                         " ", img.ref);
        const Plan plan = make_plan(opts, img.path, probe_host(dir_has(img.path)));
        debug_plan(plan);
        apply(plan);
        enter_command(opts, plan);
    }
}

} // namespace ch::run

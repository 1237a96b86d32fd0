// run.cc: ch-run's steps, in order. Directory images: ch-run becomes the
// user's command (no supervisor), so signals and exit status are its own.
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
#include "run/apply.hh"
#include "run/env.hh"
#include "run/plan.hh"
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

HostFacts probe_host(const fs::path& image_dir) {
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
    const auto image_fd = std::make_shared<Fd>(open_at(AT_FDCWD, image_dir, O_PATH | O_DIRECTORY));
    h.image_has = [image_fd](const fs::path& p) {
        return static_cast<bool>(resolve_in_root(image_fd->get(), p.string()));
    };
    return h;
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
    if (img.kind == image::Kind::squash)
        throw Error(cat("can't mount ", img.path.string(), ": SquashFS images are not supported yet"),
                    Exit::squash);
    if (opts.mount)
        log::warning("--mount is for SquashFS images; ignored for ", image::kind_name(img.kind), " ",
                     img.ref);

    const Plan plan = make_plan(opts, img.path, probe_host(img.path));
    log::debug("plan:\n", describe(plan));
    apply(plan);

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

} // namespace ch::run

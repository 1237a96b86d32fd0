// exec.cc: see exec.hh. Runs after pivot_root: every path here is the
// container's, and ch-run becomes the command (no supervisor), so signals and
// exit status are the command's own.
#include "run/exec.hh"

#include <cerrno>
#include <cstdlib>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run/apply.hh"
#include "run/env.hh"
#include "util/error.hh"
#include "util/fd.hh"

extern char** environ;

namespace ch::run {

std::string read_image_file(const fs::path& path, std::size_t max_bytes) {
    const std::string what = cat("can't read ", path.string());
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    const Fd fd = try_open_at(AT_FDCWD, path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (!fd)
        throw_errno(what);

    struct stat st {};

    if (::fstat(fd.get(), &st) != 0)
        throw_errno(what);
    if (!S_ISREG(st.st_mode))
        fail(what, ": not a regular file");
    if (static_cast<std::size_t>(st.st_size) > max_bytes)
        fail(what, ": ", st.st_size, " bytes, more than the ", max_bytes, " allowed");
    // The size is checked again while reading: the file may grow meanwhile.
    return read_all(fd.get(), path.string(), max_bytes);
}

namespace {

std::vector<std::string> host_environment() {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; e++)
        env.emplace_back(*e);
    return env;
}

// Turn "--set-env" (no argument) into the variables of the image's
// /ch/environment, read inside the container.
std::vector<EnvDelta> resolve_image_env(const std::vector<EnvDelta>& deltas) {
    std::vector<EnvDelta> out;
    for (const auto& d : deltas) {
        if (d.kind != EnvDelta::Kind::image_file) {
            out.push_back(d);
            continue;
        }
        EnvDelta set;
        set.vars = parse_env_text(read_image_file("/ch/environment", image_env_max_bytes),
                                  d.separator, "/ch/environment");
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

void enter_command(const RunOptions& opts, const Plan& plan) {
    EnvInputs in;

    struct stat st {};

    const char* user = std::getenv("USER");
    in.home = opts.home ? cat("/home/", user == nullptr ? "" : user)
                        : (::stat("/root", &st) == 0 ? "/root" : "/");
    in.site_set = opts.site_env_set;
    in.pass = opts.site_env_pass;
    in.deltas = resolve_image_env(opts.env);
    in.no_expand = opts.env_no_expand;
    const EnvVars env = build_environment(host_environment(), in);
    if (::chdir(plan.cwd.c_str()) != 0)
        throw_errno("can't cd to ", plan.cwd);
    exec_command(opts, env);
}

} // namespace ch::run

// pmix.cc: see pmix.hh.
#include "run/pmix.hh"

#include <algorithm>
#include <cstdlib>

#include <fcntl.h>
#include <sys/stat.h>

#include "run/plan.hh"
#include "util/error.hh"
#include "util/log.hh"

namespace ch::run {

std::vector<std::string> pmix_dirs_from_env() {
    std::vector<std::string> dirs;
    for (const char* var : pmix_dir_vars()) {
        const char* dir = std::getenv(var);
        if (dir != nullptr && dir[0] == '/' &&
            std::find(dirs.begin(), dirs.end(), dir) == dirs.end())
            dirs.emplace_back(dir);
    }
    return dirs;
}

PmixDirs PmixDirs::open(const std::vector<std::string>& dirs) {
    PmixDirs p;
    for (const auto& d : dirs) {
        Fd fd = try_open_at(AT_FDCWD, d, O_PATH | O_DIRECTORY);
        if (fd)
            p.dirs_.emplace_back(d, std::move(fd));
    }
    return p;
}

EnvVars rewrite_pmix_paths(const std::vector<std::string>& host_env, const std::string& dir,
                           const std::string& to) {
    std::string base = dir;
    while (base.size() > 1 && base.back() == '/')
        base.pop_back();
    EnvVars out;
    for (const auto& kv : host_env) {
        const std::size_t eq = kv.find('=');
        if (eq == std::string::npos || !kv.starts_with("PMIX_"))
            continue;
        const std::string value = kv.substr(eq + 1);
        if (value == base || value.starts_with(base + "/"))
            out.emplace_back(kv.substr(0, eq), to + value.substr(base.size()));
    }
    return out;
}

EnvVars PmixDirs::reach(const std::vector<std::string>& host_env) {
    EnvVars out;
    for (auto& [dir, fd] : dirs_) {
        struct stat host {
        }, here{};

        if (::fstat(fd.get(), &host) != 0)
            continue;
        if (::stat(dir.c_str(), &here) == 0 && here.st_dev == host.st_dev &&
            here.st_ino == host.st_ino)
            continue; // bound at its own path, or visible through /tmp or /dev
        const int kept = ::fcntl(fd.get(), F_DUPFD, 3); // without FD_CLOEXEC
        if (kept < 0)
            throw_errno("can't keep PMIx directory ", dir, " open for the command");
        const std::string to = cat("/proc/self/fd/", kept);
        log::verbose("PMIx directory ", dir, " is not in the image: reached as ", to);
        for (auto& v : rewrite_pmix_paths(host_env, dir, to))
            out.push_back(std::move(v));
    }
    dirs_.clear();
    return out;
}

} // namespace ch::run

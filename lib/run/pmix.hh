// pmix.hh: letting MPI in the container reach its launcher's PMIx server.
//
// Slurm's mpi/pmix plugin and Open MPI's mpirun hand each rank directories
// (PMIX_SERVER_TMPDIR, the shared-memory data store PMIX_DSTORE_*_BASE_PATH)
// that it must open at the given path, or every rank prints "PMIX ERROR".
// The plan binds them at the same path, which works when the image has the
// destination (or is writable). When it does not, as with a read-only image
// and Slurm's spool directory, ch-run keeps a descriptor of the host's
// directory open into the command and points the variables at
// /proc/self/fd/N, which reaches that directory from inside the container
// without creating anything anywhere. The descriptor names a directory the
// user can already open on the host, so it grants nothing.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "run/env.hh"
#include "util/fd.hh"

namespace ch::run {

// The absolute directories the pmix_dir_vars() name, each once.
std::vector<std::string> pmix_dirs_from_env();

class PmixDirs {
public:
    // On the host, before any namespace: open each absolute directory (O_PATH).
    static PmixDirs open(const std::vector<std::string>& dirs);

    // Inside the container: for each directory not visible at its own path,
    // keep its descriptor open across exec and return the PMIX_* variables
    // of host_env whose values start with it, rewritten to /proc/self/fd/N.
    EnvVars reach(const std::vector<std::string>& host_env);

private:
    std::vector<std::pair<std::string, Fd>> dirs_;
};

// The rewrite alone (pure): values of PMIX_* variables that are dir or lie
// under it get dir replaced by to.
EnvVars rewrite_pmix_paths(const std::vector<std::string>& host_env, const std::string& dir,
                           const std::string& to);

} // namespace ch::run

// options.hh: what the user asked ch-run for, already parsed and checked by
// bin/ch-run.cc. Field names follow the option names (--private-tmp is
// private_tmp), so one grep finds an option everywhere.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace ch::run {

namespace fs = std::filesystem;

struct BindSpec {
    fs::path src;
    fs::path dst; // as given, inside the container
};

// One of the site or user configuration's run.binds.
struct SiteBind {
    BindSpec bind;
    bool optional = false; // skipped when either side is missing
    std::string origin;    // FILE:LINE:COL, for messages
};

// One --set-env, --set-env0 or --unset-env, in command-line order.
struct EnvDelta {
    enum class Kind {
        set,        // one KEY=VALUE, or a host file already read into vars
        image_file, // --set-env with no argument: /ch/environment inside the image
        unset,      // --unset-env GLOB
    };
    Kind kind = Kind::set;
    std::vector<std::pair<std::string, std::string>> vars; // for set
    std::string glob;                                      // for unset
    char separator = '\n';                                 // for image_file ('\0' for --set-env0)
};

struct RunOptions {
    std::string image_ref;
    std::vector<std::string> command;
    std::vector<BindSpec> bind;
    // From the site and user configuration (run.binds, run.env): see run/site.hh.
    std::vector<SiteBind> site_bind;
    std::vector<std::pair<std::string, std::string>> site_env_set;
    std::vector<std::string> site_env_pass; // NAME or PREFIX*
    std::optional<std::string> cd;
    std::optional<std::vector<std::string>> inject; // --inject[=SET,...]: empty for every set
    bool env_no_expand = false;
    std::optional<gid_t> gid;
    bool home = false;
    // --join (also set by --join-ct and --join-tag), and --join-pid: see run/join.hh.
    bool join = false;
    std::optional<unsigned> join_ct;
    std::optional<std::string> join_tag;
    std::optional<pid_t> join_pid;
    std::optional<std::chrono::milliseconds> join_timeout;
    std::optional<fs::path> mount; // -m: SquashFS mount point
    bool no_passwd = false;
    bool private_tmp = false;
    int quiet = 0;
    std::optional<fs::path> storage;
    std::vector<EnvDelta> env;
    std::optional<uid_t> uid;
    bool unsafe = false;
    int verbose = 0;
    bool write = false;
    std::optional<std::string> write_fake; // -W SIZE; set (to the default) when -W is given
};

constexpr const char* write_fake_default_size = "12%";

} // namespace ch::run

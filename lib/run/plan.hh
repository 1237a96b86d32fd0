// plan.hh: every decision ch-run makes about namespaces and mounts, as data.
// make_plan is pure (unit-tested without privileges); apply.cc carries a Plan
// out step by step. -vv prints the plan before it is applied.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <sys/types.h>

#include "image/ldso.hh"
#include "run/options.hh"

namespace ch::run {

namespace fs = std::filesystem;

// What to do when a source or destination is missing (Charliecloud's BD_*).
enum class Need {
    required, // both must exist; error otherwise
    optional, // skip quietly if either is missing
    make_dst, // the root is writable: create a missing destination
};

struct IdMap {
    unsigned inside = 0;
    unsigned outside = 0;
};

struct Bind {
    fs::path src; // host path
    fs::path dst; // container path, absolute
    Need need = Need::required;
};

struct Tmpfs {
    fs::path dst;
    std::string options;
};

// A file written into ch-run's private scratch space and bound at dst.
struct WriteFile {
    fs::path dst;
    std::string content;
    Need need = Need::required;
};

// From here on ch-run's scratch space (where generated files live) can't be
// a bind source: recursive binds of /dev, /tmp and friends must not carry it,
// and through it a view of the image, into the container when the image lives
// under one of them. So every WriteFile comes before this step.
struct SealScratch {};

// --inject's /etc/ld.so.cache: the image's entries with libs in their place.
// apply writes it into the -W overlay's upper layer before mounting the
// overlay when the image's /etc is a directory; otherwise it is generated
// when the step runs (reading the image through the new root) and bound as a
// WriteFile is, so it too comes before SealScratch.
struct WriteLdCache {
    std::vector<image::LdCacheEntry> libs; // soname -> path in the container
};

// One step of the plan. apply() dispatches with std::visit, so a new kind
// does not compile until apply, describe and the tests handle it.
using Step = std::variant<WriteFile, SealScratch, Bind, Tmpfs, WriteLdCache>;

// A SquashFS image, mounted with FUSE on mount_dir inside the container's
// new mount namespace (never on the host) right after the namespaces are
// made; mount_dir then serves as the image directory.
struct SquashMount {
    fs::path file;      // the image, absolute
    fs::path mount_dir; // -m DIR, or STORAGE/mnt
    // Set when mount_dir is STORAGE/mnt: apply opens STORAGE, then mnt in
    // it, without following symlinks, and checks both are the user's own
    // through those descriptors before mounting on the second.
    std::optional<fs::path> storage;
};

struct Plan {
    IdMap uid, gid;
    fs::path image;                          // host directory that becomes /
    std::optional<SquashMount> squash;       // mounted on image first
    bool write = false;                      // -w: leave the image writable
    std::optional<std::string> overlay_size; // -W: tmpfs size for the overlay's upper layer
    std::vector<Step> steps;                 // after the root exists, in order
    // Made in the -W overlay's upper layer before it is mounted (relative;
    // "DIR/" or FILE): destinations that then exist whoever owns the image.
    std::vector<std::string> upper_paths;
    std::string cwd = "/";

    bool writable_root() const { return write || overlay_size.has_value(); }
};

// --inject (inject.hh): host files to bind (make_dst: the plan adds -W) and
// the libraries among them.
struct Injection {
    std::vector<Bind> binds;
    std::vector<image::LdCacheEntry> libs;
    std::vector<std::string> upper_paths; // see Plan::upper_paths
};

// What make_plan needs to know about the host and the image.
struct HostFacts {
    uid_t euid = 0;
    gid_t egid = 0;
    std::string user;                // $USER
    std::optional<std::string> home; // $HOME
    std::string tmpdir = "/tmp";     // $TMPDIR or /tmp
    std::string group_name;          // of egid, for /etc/group
    std::string gecos;
    std::function<bool(const fs::path&)> image_has; // path exists inside the image
    // Directories a PMIx server (Slurm's mpi/pmix, Open MPI's mpirun) told
    // its clients to use, absolute, in pmix_dir_vars order.
    std::vector<std::string> pmix_dirs;
    std::optional<Injection> injection; // --inject
};

// The variables a PMIx server sets to directories its clients must reach
// (rendezvous files, the shared-memory data store), at the same path.
const std::vector<const char*>& pmix_dir_vars();

// Host paths bound by default: required ones must exist on the host and in
// the image; optional ones are bound when both sides exist.
struct DefaultBind {
    const char* path;
    bool required;
};

const std::vector<DefaultBind>& default_binds();

// Steps come in this order: generated files, SealScratch, default binds,
// /tmp, the PMIx directories, the site configuration's binds (opts.site_bind),
// home, --bind in command-line order; a destination made by a later
// step can thus never hide an earlier one's. Throws UsageError for a bad
// --bind destination (relative, "/", or climbing out of the image) or --home
// without $HOME.
Plan make_plan(const RunOptions& opts, const fs::path& image_dir, const HostFacts& host);

// The same for a SquashFS image, mounted on -m DIR or STORAGE/mnt, which then
// is the image directory. The image is read-only whatever -w says (so -w
// creates no destination); -w with --home is refused when /home/$USER would
// have to be created (Error).
Plan make_squash_plan(const RunOptions& opts, const fs::path& file, const fs::path& storage,
                      const HostFacts& host);

std::string describe(const Step& s);
std::string describe(const Plan& p);

} // namespace ch::run

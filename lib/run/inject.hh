// inject.hh: ch-run --inject, host files bound into the container at start.
//
// The site names sets of host files in its configuration (run.inject:
// {SET: [PATH | {source: S, target: T}]}); --inject binds the chosen sets.
// Destinations come from the -W overlay (--inject adds it), so nothing is
// written to the image, which may be read-only or SquashFS. Libraries (ELF
// shared objects with a soname) are found by the image's loader through a
// generated /etc/ld.so.cache: the image's own entries (parsed with every
// offset checked) with the injected ones put in their place, written into
// ch-run's scratch space and bound over the image's. ldconfig never runs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "image/ldso.hh"
#include "run/plan.hh"
#include "util/fd.hh"

namespace ch::config {
class Config;
}

namespace ch::run {

// A file of a set: its host path and its path in the container (absolute,
// normalised). Strings, not fs::path: ch-run makes two for each entry at
// every --inject start, and fs::path splits every one into its components.
struct InjectFile {
    std::string src, dst;
    // src is a library's name (a soname, "libmpi.so.40"), to be found in the
    // host's ld.so.cache; origin says where the configuration gives it.
    bool by_name = false;
    std::string origin;
};

// The files of the sets named (every set when sets is empty), from
// run.inject in cfg; -v says which file and line each set came from. Throws
// Error at the configuration's FILE:LINE:COL for a malformed entry, and
// UsageError for a set the configuration lacks.
std::vector<InjectFile> inject_files(const config::Config& cfg,
                                     const std::vector<std::string>& sets);

// Where libraries without a target of their own are bound: their host
// directories, one mount each, at inject_dir/0, /1, ...
constexpr const char* inject_dir = "/ch/inject";

// Libraries given by name are looked up in host_cache (the host's
// /etc/ld.so.cache: its entry for this machine's kind of library gives the
// path, and nothing is read from the library), and bound by the directory of
// that path (ldconfig makes the soname a link to its file in the same
// directory). For the other entries, reads each source's ELF header on the
// host. Libraries (ELF shared objects
// with a soname) without a target of their own are bound by directory (one
// mount for many libraries; the directory of the file a symlink names) and
// the cache entries point into it; other files, and libraries with a target,
// are bound one by one (binds that make their destinations, Need::make_dst).
// The mount points are made in the overlay's upper layer before it is
// mounted (upper_paths), as /etc/ld.so.cache is (write_upper_ld_cache), so
// that they exist whoever owns the image's directories.
Injection group_libraries(const std::vector<InjectFile>& files,
                          std::optional<std::string_view> host_cache = std::nullopt);

// The host's ld.so.cache at path, for libraries given by name: a regular
// file of root's that no one else may write (the host's loader trusts it as
// much), mapped; each entry is checked as it is read (image::find_ld_cache).
// Throws Error naming path and the reason.
MappedFile host_ld_cache(const char* path = "/etc/ld.so.cache");

// Both of the above, from the configuration ch-run has loaded once.
Injection prepare_injection(const config::Config& cfg, const std::vector<std::string>& sets);

// The cache to bind over /etc/ld.so.cache, given to sink in parts (see
// image::splice_ld_cache): libs, then the image's entries except those for
// the same sonames and the glibc-hwcaps variants (their index into the
// cache's extension would point nowhere in ours; the loader falls back to the
// plain entry). image_cache is the image's file, if any; a damaged one is
// skipped with a warning (the loader would skip it too).
void write_merged_ld_cache(const std::vector<image::LdCacheEntry>& libs,
                           std::optional<std::string_view> image_cache,
                           const image::LdCacheSink& sink);
// The same, as one string.
std::string merged_ld_cache(const std::vector<image::LdCacheEntry>& libs,
                            std::optional<std::string_view> image_cache);

// When the image's /etc/ld.so.cache is a symlink, removes it from the
// writable layer at rootfd (the image keeps it): a bind would land wherever
// it points, perhaps under a later bind such as /tmp, which would hide the
// generated cache.
void unlink_ld_cache_symlink(int rootfd);

// Makes path (relative; a trailing "/" for a directory, else an empty file)
// in the overlay's upper layer before the overlay is mounted. Skipped when
// the image (lowerfd) has something other than a directory on the way, which
// the upper layer would hide.
void prepare_upper(int lowerfd, int upperfd, const std::string& path);

// --inject's cache (merged_ld_cache of the image's at lowerfd) written as
// etc/ld.so.cache in the overlay's upper layer before the overlay is
// mounted, so that it hides the image's file, or symlink, there. False, with
// nothing written, when the image's /etc is not a directory. For ch-run,
// which execs soon after: the image's cache is left mapped for execve to drop
// (MappedFile::keep_until_exec).
bool write_upper_ld_cache(int lowerfd, int upperfd, const std::vector<image::LdCacheEntry>& libs);

// The image's /etc/ld.so.cache under rootfd, found within the root and
// mapped, not read (see MappedFile: the image's owner controls the container
// anyway); nullopt when it is missing, not a regular file or too large.
std::optional<MappedFile> read_image_ld_cache(int rootfd);

} // namespace ch::run

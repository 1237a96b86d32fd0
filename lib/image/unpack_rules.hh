// unpack_rules.hh: the unpacking rules that make hostile archives safe. Pure
// logic, no I/O: every entry of every source passes through UnpackRules
// before a sink sees it, and what comes out can be written with openat walks
// that never leave the destination and never follow a symlink.
//
// The rules keep a model of the image tree built so far (path -> type,
// symlink target, layer), which is what lets them resolve symlinked parents
// inside the image, check hard links against earlier entries, and turn OCI
// whiteouts into removals of what earlier layers wrote.
//
// Limits: what an archive describes is checked before it is believed, so a
// small hostile archive can't make the rules, or a sink after them, use
// memory or stack out of proportion to it (man/ch-convert.1, LIMITS).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/entry.hh"

namespace ch::image {

// An entry's path, after normalisation and after resolving symlinked
// parents, has at most this many bytes (PATH_MAX: more can't be passed to a
// system call whole) ...
inline constexpr std::size_t max_path_bytes = 4096;
// ... and at most this many components ...
inline constexpr std::size_t max_depth = 1024;
// ... each at most this many bytes (NAME_MAX: no Linux filesystem, and no
// SquashFS, can hold a longer name).
inline constexpr std::size_t max_name_bytes = 255;
// An entry's extended attributes, as the source delivers them (before any
// are dropped): at most this many bytes of names and values together (the
// kernel's XATTR_LIST_MAX and XATTR_SIZE_MAX are 64 KiB each) ...
inline constexpr std::size_t max_xattr_bytes = 64 * 1024;
// ... and at most this many attributes.
inline constexpr std::size_t max_xattrs = 1024;

// A sparse file has at most this many data regions (16 MiB of map).
inline constexpr std::size_t max_extents = 1 << 20;

// Throws Error "entry 'NAME': ..." if count attributes taking bytes bytes
// (names plus values) exceed the limits above. Sources call it while they
// collect attributes, so they stop reading at the limit.
void check_xattr_limits(std::string_view entry, std::size_t count, std::size_t bytes);

// What unpack_init (Charliecloud's name) creates when it is missing, so that
// ch-run can bind its default mounts: these directories, mnt/0 to mnt/9,
// ch/, and empty etc/hosts and etc/resolv.conf.
inline constexpr const char* init_dirs[] = {"bin",  "dev", "etc", "mnt",
                                            "proc", "sys", "tmp", "usr"};

struct UnpackOptions {
    bool keep_xattrs = true; // keep user.* extended attributes (others are always dropped)
    // Strip this first component from every name (see TarbombProbe); empty:
    // strip nothing.
    std::string strip_top;
};

// What the rules did, for the summary and for tests.
struct UnpackStats {
    std::uint64_t absolute = 0;         // absolute names made relative
    std::uint64_t specials = 0;         // device nodes, FIFOs and sockets dropped
    std::uint64_t whiteout_markers = 0; // ".wh.*" entries seen (never written)
    std::uint64_t whiteouts = 0;        // EntryType::whiteout entries emitted
    std::uint64_t setid_stripped = 0;   // entries that lost setuid/setgid/sticky bits
    std::uint64_t xattrs_dropped = 0;   // xattrs outside user.* (or all, without keep_xattrs)
    std::uint64_t parents_made = 0;     // directories implied by an entry's path
    std::uint64_t redirected = 0;       // entries whose parent path went through a symlink
    std::uint64_t init_made = 0;        // entries made by init_image()
};

// Split an entry name into components: leading "/" and "./", empty and "."
// components dropped. Throws Error "entry 'NAME': path leaves the image" for
// any ".." component, and for a path over max_path_bytes, max_depth or
// max_name_bytes
// (checked as it goes: a 40 KB name costs no more than a 4 KB one). Sets
// absolute if the name started with "/".
std::vector<std::string> split_entry_path(std::string_view name, bool& absolute);

// Tarbomb detection (Charliecloud's, COMPAT.md "Pull and convert" section 3):
// many tarballs are made with `tar czf img.tar.gz img/`, so every member
// sits under one top-level directory that is not itself part of an image.
// Feed every entry of every layer; if they all lie under one top-level
// directory other than bin, dev, etc, mnt, proc, sys, tmp or usr, wrapper()
// names it, and UnpackOptions::strip_top removes it. add() returns false as
// soon as the answer is no, so the caller can stop reading early.
class TarbombProbe {
public:
    bool add(const Entry& e);
    std::optional<std::string> wrapper() const;

private:
    std::optional<std::string> top_;
    bool no_ = false;
};

class UnpackRules {
public:
    explicit UnpackRules(UnpackOptions opts = {});
    ~UnpackRules();
    UnpackRules(const UnpackRules&) = delete;
    UnpackRules& operator=(const UnpackRules&) = delete;

    // Entries after this call belong to a new layer. Whiteouts hide only
    // entries of earlier layers (OCI image-spec layer.md), so a single
    // archive needs no call at all: its whiteouts remove nothing.
    void begin_layer();

    // Sanitise one entry from a source. Appends to out, in order, what a sink
    // must apply: directories implied by the path but not yet in the image,
    // whiteouts (from ".wh.NAME" or ".wh..wh..opq"), then the entry itself
    // with its path resolved and normalised. Appends nothing for a dropped
    // entry. Throws Error "entry 'NAME': reason" for anything unsafe.
    //
    // Guarantees for each entry appended: the path has no "", "." or ".."
    // components and no leading "/"; every parent component is a directory
    // already emitted; a hardlink's link_target is the resolved path of an
    // earlier non-directory entry; no setuid/setgid bits; uid = gid = 0;
    // only user.* xattrs; type is file, dir, symlink, hardlink or whiteout.
    void apply(Entry e, std::vector<Entry>& out);
    std::vector<Entry> apply(Entry e);

    // unpack_init: after the last entry, append what ch-run needs and the
    // image lacks (init_dirs, mnt/0 to mnt/9, ch/, etc/hosts,
    // etc/resolv.conf), dated mtime. A name that exists as anything,
    // including a symlink, is left alone (lexists: a symlink in the last
    // component is not followed); one whose parent is not a directory is
    // skipped.
    void init_image(std::vector<Entry>& out, std::int64_t mtime);

    const UnpackStats& stats() const { return stats_; }

    // Lines the user should see as warnings once the stream is done.
    std::vector<std::string> warnings() const;

private:
    struct Node;
    struct Walk;

    Walk resolve_parent(const std::vector<std::string>& comps, std::size_t n, const Entry& e,
                        bool create, std::vector<Entry>* out);
    void apply_whiteout(const Entry& e, const std::vector<std::string>& comps,
                        std::vector<Entry>& out);
    void hide_lower(Node& parent, const std::string& name, const std::string& path,
                    std::vector<Entry>& out);
    Node& resolve_hardlink(Entry& e, const std::string& resolved_path);
    void strip_wrapper(Entry& e, std::vector<std::string>& comps) const;
    bool exists_nofollow(const std::string& path);

    UnpackOptions opts_;
    UnpackStats stats_;
    unsigned layer_ = 0;
    bool initialising_ = false; // in init_image: names are not stripped
    std::unique_ptr<Node> root_;
};

} // namespace ch::image

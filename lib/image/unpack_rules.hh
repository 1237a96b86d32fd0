// unpack_rules.hh: the unpacking rules that make hostile archives safe. Pure
// logic, no I/O: every entry of every source passes through UnpackRules
// before a sink sees it, and what comes out can be written with openat walks
// that never leave the destination and never follow a symlink.
//
// The rules keep a model of the image tree built so far (path -> type,
// symlink target, layer), which is what lets them resolve symlinked parents
// inside the image, check hard links against earlier entries, and turn OCI
// whiteouts into removals of what earlier layers wrote.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "image/entry.hh"

namespace ch::image {

struct UnpackOptions {
    bool keep_xattrs = true; // keep user.* extended attributes (others are always dropped)
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
};

// Split an entry name into components: leading "/" and "./", empty and "."
// components dropped. Throws Error "entry 'NAME': path leaves the image" for
// any ".." component. Sets absolute if the name started with "/".
std::vector<std::string> split_entry_path(std::string_view name, bool& absolute);

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

    UnpackOptions opts_;
    UnpackStats stats_;
    unsigned layer_ = 0;
    std::unique_ptr<Node> root_;
};

} // namespace ch::image

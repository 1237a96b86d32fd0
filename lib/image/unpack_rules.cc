// unpack_rules.cc: see unpack_rules.hh. Pure logic: this file must never
// touch the filesystem. Each rule exists because some archive in the wild
// (or some attacker) needs it:
//   - ".." anywhere is refused rather than clamped: an archive that climbs
//     out is either broken or hostile, and silently relocating its files
//     would hide that (Charliecloud also refuses it).
//   - Parent components that are symlinks in the image are resolved inside
//     the image, like openat2(RESOLVE_IN_ROOT): absolute targets restart at
//     the image root and ".." stops there. Debian's merged /usr needs this
//     (layer 1: lib -> usr/lib; layer 2: lib/x86_64-linux-gnu/libfoo.so),
//     and it means no sink ever has to follow a symlink.
//   - The last component is never followed: an entry replaces whatever is
//     at its path, including a symlink.
//   - Whiteouts hide only what earlier layers wrote (OCI image-spec,
//     layer.md "Whiteouts"), so they are resolved against the layer index
//     the model records for every path.
#include "image/unpack_rules.hh"

#include <sys/stat.h>

#include <deque>
#include <map>

#include "util/error.hh"
#include "util/strings.hh"

namespace ch::image {

namespace {

constexpr int max_links = 40; // the kernel's MAXSYMLINKS
constexpr std::string_view whiteout_prefix = ".wh.";
constexpr std::string_view opaque_marker = ".wh..wh..opq";

// Components of name without "", "." ; false if a ".." is among them.
bool split_components(std::string_view name, std::vector<std::string>& out) {
    out.clear();
    std::size_t start = 0;
    while (start <= name.size()) {
        std::size_t end = name.find('/', start);
        if (end == std::string_view::npos)
            end = name.size();
        const std::string_view c = name.substr(start, end - start);
        if (c == "..")
            return false;
        if (!c.empty() && c != ".")
            out.emplace_back(c);
        start = end + 1;
    }
    return true;
}

std::string entry_prefix(std::string_view raw) { return cat("entry '", printable(raw), "': "); }

std::string join_path(const std::string& dir, const std::string& name) {
    return dir.empty() ? name : cat(dir, "/", name);
}

bool is_special(EntryType t) {
    return t == EntryType::fifo || t == EntryType::chardev || t == EntryType::blockdev
           || t == EntryType::socket;
}

// Sparse maps come from the archive, so they are checked like names are.
void check_sparse(Entry& e, std::string_view raw) {
    if (!e.sparse)
        return;
    std::vector<Extent> kept;
    std::uint64_t end = 0;
    for (const auto& x : *e.sparse) {
        if (x.length == 0)
            continue;
        if (x.offset < end || x.offset > e.size || x.length > e.size - x.offset)
            fail(entry_prefix(raw), "bad sparse map (extent at ", x.offset, " of length ", x.length,
                 " in a file of ", e.size, " bytes)");
        end = x.offset + x.length;
        kept.push_back(x);
    }
    e.sparse = std::move(kept);
}

} // namespace

std::vector<std::string> split_entry_path(std::string_view name, bool& absolute) {
    absolute = !name.empty() && name[0] == '/';
    std::vector<std::string> comps;
    if (!split_components(name, comps))
        fail(entry_prefix(name), "path leaves the image");
    return comps;
}

struct UnpackRules::Node {
    EntryType type = EntryType::dir; // file, dir or symlink (hard links take their target's)
    std::string target;              // symlinks
    unsigned layer = 0;
    std::map<std::string, std::unique_ptr<Node>> children; // directories
};

// Where a walk over parent components ended.
struct UnpackRules::Walk {
    Node* dir = nullptr; // nullptr: missing (only when not creating)
    std::string path;    // resolved path of dir, "" for the root
    bool redirected = false;
};

UnpackRules::UnpackRules(UnpackOptions opts)
    : opts_(opts)
    , root_(std::make_unique<Node>()) {}

UnpackRules::~UnpackRules() = default;

void UnpackRules::begin_layer() { layer_++; }

std::vector<Entry> UnpackRules::apply(Entry e) {
    std::vector<Entry> out;
    apply(std::move(e), out);
    return out;
}

// Walk the first n components of comps as directories, resolving symlinks in
// the model inside the image. With create, missing directories are added to
// the model and appended to out; otherwise a missing or non-directory
// component ends the walk with dir == nullptr.
UnpackRules::Walk UnpackRules::resolve_parent(const std::vector<std::string>& comps, std::size_t n,
                                              const Entry& e, bool create,
                                              std::vector<Entry>* out) {
    std::vector<Node*> nodes{root_.get()};
    std::vector<std::string> names;
    std::deque<std::string> todo(comps.begin(), comps.begin() + static_cast<std::ptrdiff_t>(n));
    int links = 0;
    bool redirected = false;
    while (!todo.empty()) {
        std::string c = std::move(todo.front());
        todo.pop_front();
        if (c.empty() || c == ".")
            continue;
        if (c == "..") { // only from symlink targets; stops at the image root
            if (!names.empty()) {
                names.pop_back();
                nodes.pop_back();
            }
            continue;
        }
        Node* cur = nodes.back();
        const auto it = cur->children.find(c);
        if (it == cur->children.end()) {
            if (!create)
                return {};
            auto made = std::make_unique<Node>();
            made->layer = layer_;
            Node* raw = made.get();
            cur->children.emplace(c, std::move(made));
            names.push_back(std::move(c));
            nodes.push_back(raw);
            Entry d;
            d.path = join(names, "/");
            d.type = EntryType::dir;
            d.mode = 0755;
            d.mtime = e.mtime;
            out->push_back(std::move(d));
            stats_.parents_made++;
            continue;
        }
        Node& child = *it->second;
        if (child.type == EntryType::symlink) {
            if (++links > max_links)
                fail(entry_prefix(e.path), "too many levels of symbolic links");
            redirected = true;
            if (child.target[0] == '/') { // absolute: restart at the image root
                names.clear();
                nodes.resize(1);
            }
            const auto more = split(child.target, '/');
            todo.insert(todo.begin(), more.begin(), more.end());
            continue;
        }
        if (child.type != EntryType::dir) {
            if (!create)
                return {};
            names.push_back(c);
            fail(entry_prefix(e.path), "parent '", printable(join(names, "/")),
                 "' is not a directory");
        }
        names.push_back(std::move(c));
        nodes.push_back(&child);
    }
    return {nodes.back(), join(names, "/"), redirected};
}

// Emit whiteouts for everything at parent/name that came from an earlier
// layer. A directory of this layer stays, but what earlier layers put in it
// goes (it was hidden together with the earlier directory).
void UnpackRules::hide_lower(Node& parent, const std::string& name, const std::string& path,
                             std::vector<Entry>& out) {
    const auto it = parent.children.find(name);
    if (it == parent.children.end())
        return;
    Node& node = *it->second;
    if (node.layer < layer_) {
        Entry w;
        w.path = path;
        w.type = EntryType::whiteout;
        w.mode = 0;
        out.push_back(std::move(w));
        stats_.whiteouts++;
        parent.children.erase(it);
        return;
    }
    if (node.type != EntryType::dir)
        return;
    std::vector<std::string> names;
    names.reserve(node.children.size());
    for (const auto& [n, child] : node.children)
        names.push_back(n);
    for (const auto& n : names)
        hide_lower(node, n, join_path(path, n), out);
}

void UnpackRules::apply_whiteout(const Entry& e, const std::vector<std::string>& comps,
                                 std::vector<Entry>& out) {
    stats_.whiteout_markers++;
    const std::string& base = comps.back();
    // A source may also deliver a ready-made whiteout: its path is the victim.
    const bool marker = base.starts_with(whiteout_prefix);
    const bool opaque = base == opaque_marker;
    if (!opaque && base.starts_with(".wh..wh."))
        return; // other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): never written
    std::string name = base;
    if (marker && !opaque) {
        name = base.substr(whiteout_prefix.size());
        if (name.empty() || name == "." || name == "..")
            fail(entry_prefix(e.path), "whiteout names no entry");
    }
    // A whiteout of a missing path, or below a non-directory, removes nothing.
    const Walk w = resolve_parent(comps, comps.size() - 1, e, false, nullptr);
    if (w.dir == nullptr)
        return;
    if (!opaque) {
        hide_lower(*w.dir, name, join_path(w.path, name), out);
        return;
    }
    std::vector<std::string> names;
    for (const auto& [n, child] : w.dir->children)
        names.push_back(n);
    for (const auto& n : names)
        hide_lower(*w.dir, n, join_path(w.path, n), out);
}

// Point a hard link at the resolved path of an earlier non-directory entry;
// returns that entry's node.
UnpackRules::Node& UnpackRules::resolve_hardlink(Entry& e, const std::string& resolved_path) {
    const std::string shown = printable(e.link_target);
    std::vector<std::string> comps;
    if (!split_components(e.link_target, comps))
        fail(entry_prefix(e.path), "hard link target '", shown, "' leaves the image");
    if (comps.empty())
        fail(entry_prefix(e.path), "hard link to the image root");
    const Walk w = resolve_parent(comps, comps.size() - 1, e, false, nullptr);
    Node* node = nullptr;
    if (w.dir != nullptr) {
        const auto it = w.dir->children.find(comps.back());
        if (it != w.dir->children.end())
            node = it->second.get();
    }
    if (node == nullptr)
        fail(entry_prefix(e.path), "hard link target '", shown,
             "' is not an earlier entry of the image");
    if (node->type == EntryType::dir)
        fail(entry_prefix(e.path), "hard link target '", shown, "' is a directory");
    std::string target = join_path(w.path, comps.back());
    if (target == resolved_path)
        fail(entry_prefix(e.path), "hard link to itself");
    if (target.starts_with(resolved_path + "/")) // replacing the directory would remove it
        fail(entry_prefix(e.path), "hard link target '", shown, "' is inside the link's own path");
    e.link_target = std::move(target);
    return *node;
}

void UnpackRules::apply(Entry e, std::vector<Entry>& out) {
    bool absolute = false;
    const std::vector<std::string> comps = split_entry_path(e.path, absolute);
    if (absolute)
        stats_.absolute++;
    if (!comps.empty() && (comps.back().starts_with(whiteout_prefix) || e.type == EntryType::whiteout)) {
        apply_whiteout(e, comps, out);
        return;
    }
    if (is_special(e.type)) {
        stats_.specials++;
        return;
    }
    if (e.type == EntryType::whiteout) // a whiteout of the root: nothing to hide
        return;

    // Permissions: no setuid/setgid anywhere; sticky only on directories,
    // where it means something (/tmp); the owner can always read and write
    // (and search directories), so the user can manage and delete the image.
    const mode_t setid = S_ISUID | S_ISGID;
    if ((e.mode & setid) != 0 && e.type != EntryType::symlink)
        stats_.setid_stripped++;
    if (e.type == EntryType::dir)
        e.mode = (e.mode & 07777 & ~setid) | 0700;
    else if (e.type == EntryType::symlink)
        e.mode = 0777;
    else
        e.mode = (e.mode & 0777) | 0600;
    e.uid = 0;
    e.gid = 0;
    e.dev_major = e.dev_minor = 0;
    if (!opts_.keep_xattrs) {
        stats_.xattrs_dropped += e.xattrs.size();
        e.xattrs.clear();
    } else {
        std::erase_if(e.xattrs, [&](const Xattr& x) {
            const bool drop = !x.name.starts_with("user.");
            stats_.xattrs_dropped += drop ? 1 : 0;
            return drop;
        });
    }
    if (e.type != EntryType::file) {
        e.size = 0;
        e.sparse.reset();
    } else {
        check_sparse(e, e.path);
    }
    if (e.type != EntryType::symlink && e.type != EntryType::hardlink)
        e.link_target.clear();
    if (e.type == EntryType::symlink && e.link_target.empty())
        fail(entry_prefix(e.path), "symlink has an empty target");

    if (comps.empty()) { // the image root itself
        if (e.type != EntryType::dir)
            fail(entry_prefix(e.path), "the image root must be a directory, not a ",
                 type_name(e.type));
        root_->layer = layer_;
        e.path.clear();
        out.push_back(std::move(e));
        return;
    }

    const Walk w = resolve_parent(comps, comps.size() - 1, e, true, &out);
    if (w.redirected)
        stats_.redirected++;
    const std::string& name = comps.back();
    std::string path = join_path(w.path, name);

    const Node* target_node = e.type == EntryType::hardlink ? &resolve_hardlink(e, path) : nullptr;

    auto& slot = w.dir->children[name];
    if (slot && slot->type == EntryType::dir && e.type == EntryType::dir) {
        slot->layer = layer_; // directory over directory: merge, the sink updates the mode
    } else {
        auto node = std::make_unique<Node>();
        node->layer = layer_;
        if (e.type == EntryType::hardlink) {
            node->type = target_node->type;
            node->target = target_node->target;
        } else {
            node->type = e.type;
            if (e.type == EntryType::symlink)
                node->target = e.link_target;
        }
        slot = std::move(node);
    }
    e.path = std::move(path);
    out.push_back(std::move(e));
}

std::vector<std::string> UnpackRules::warnings() const {
    std::vector<std::string> w;
    if (stats_.absolute > 0)
        w.push_back(cat(stats_.absolute, " entr", stats_.absolute == 1 ? "y" : "ies",
                        " had an absolute name; made relative to the image root"));
    if (stats_.specials > 0)
        w.push_back(cat("dropped ", stats_.specials,
                        " device file(s), FIFO(s) or socket(s): not allowed in images"));
    return w;
}

} // namespace ch::image

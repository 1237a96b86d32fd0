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
//   - Limits (unpack_rules.hh) are checked before anything is allocated in
//     proportion to what the entry claims, and every walk of the model is
//     iterative: its depth is bounded, but the stack is not ours to spend.
//   - user.overlay.* attributes are dropped: ch-run -W mounts an overlay
//     with userxattr, which would read them from the image as its own
//     metadata (opaque directories, redirects).
#include "image/unpack_rules.hh"

#include <deque>
#include <map>
#include <utility>

#include <sys/stat.h>

#include "util/error.hh"
#include "util/strings.hh"

namespace ch::image {

namespace {

constexpr int max_links = 40; // the kernel's MAXSYMLINKS
constexpr std::string_view whiteout_prefix = ".wh.";
constexpr std::string_view opaque_marker = ".wh..wh..opq";
constexpr std::string_view overlay_xattr_prefix = "user.overlay.";

enum class Split { ok, dotdot, too_long, too_deep, long_name };

// Components of name without "" and "."; stops at the first ".." and as
// soon as the normalised path would exceed the limits.
Split split_components(std::string_view name, std::vector<std::string>& out) {
    out.clear();
    std::size_t bytes = 0;
    std::size_t start = 0;
    while (start <= name.size()) {
        std::size_t end = name.find('/', start);
        if (end == std::string_view::npos)
            end = name.size();
        const std::string_view c = name.substr(start, end - start);
        if (c == "..")
            return Split::dotdot;
        if (!c.empty() && c != ".") {
            if (c.size() > max_name_bytes)
                return Split::long_name;
            bytes += (out.empty() ? 0 : 1) + c.size();
            if (bytes > max_path_bytes)
                return Split::too_long;
            if (out.size() == max_depth)
                return Split::too_deep;
            out.emplace_back(c);
        }
        start = end + 1;
    }
    return Split::ok;
}

std::string entry_prefix(std::string_view raw) {
    return cat("entry ", quote_name(raw), ": ");
}

std::string limit_problem(Split s) {
    if (s == Split::too_long)
        return cat("longer than ", max_path_bytes, " bytes");
    if (s == Split::long_name)
        return cat("made of a name longer than ", max_name_bytes, " bytes");
    return cat("more than ", max_depth, " components deep");
}

std::string join_path(const std::string& dir, const std::string& name) {
    return dir.empty() ? name : cat(dir, "/", name);
}

bool is_special(EntryType t) {
    return t == EntryType::fifo || t == EntryType::chardev || t == EntryType::blockdev ||
           t == EntryType::socket;
}

bool is_init_dir(std::string_view name) {
    for (const char* d : init_dirs)
        if (name == d)
            return true;
    return false;
}

// Sparse maps come from the archive, so they are checked like names are.
void check_sparse(Entry& e, std::string_view raw) {
    if (!e.sparse)
        return;
    if (e.sparse->size() > max_extents)
        fail(entry_prefix(raw), "sparse map of more than ", max_extents, " regions");
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

void check_xattr_limits(std::string_view entry, std::size_t count, std::size_t bytes) {
    if (count > max_xattrs)
        fail(entry_prefix(entry), "more than ", max_xattrs, " extended attributes");
    if (bytes > max_xattr_bytes)
        fail(entry_prefix(entry), "extended attributes take more than ", max_xattr_bytes,
             " bytes (names and values)");
}

std::vector<std::string> split_entry_path(std::string_view name, bool& absolute) {
    absolute = !name.empty() && name[0] == '/';
    std::vector<std::string> comps;
    switch (const Split s = split_components(name, comps)) {
    case Split::ok:
        return comps;
    case Split::dotdot:
        fail(entry_prefix(name), "path leaves the image");
    default:
        fail(entry_prefix(name), "path is ", limit_problem(s));
    }
}

bool TarbombProbe::add(const Entry& e) {
    if (no_)
        return false;
    std::vector<std::string> comps;
    if (split_components(e.path, comps) != Split::ok) { // the unpacking pass will say why
        no_ = true;
        return false;
    }
    if (comps.empty()) // the root itself
        return true;
    const std::string& top = comps.front();
    // A top-level file, an image directory, or a second top-level name.
    if ((comps.size() == 1 && e.type != EntryType::dir) || is_init_dir(top) ||
        (top_ && *top_ != top)) {
        no_ = true;
        return false;
    }
    if (!top_)
        top_ = top;
    return true;
}

std::optional<std::string> TarbombProbe::wrapper() const {
    if (no_)
        return std::nullopt;
    return top_;
}

struct UnpackRules::Node {
    EntryType type = EntryType::dir; // file, dir or symlink (hard links take their target's)
    std::string target;              // symlinks
    unsigned layer = 0;
    std::map<std::string, std::unique_ptr<Node>> children; // directories
};

namespace {

// Free a subtree without recursion: the default destructor would recurse
// once per level.
template <typename NodePtr>
void destroy(NodePtr n) {
    std::vector<NodePtr> work;
    work.push_back(std::move(n));
    while (!work.empty()) {
        NodePtr cur = std::move(work.back());
        work.pop_back();
        if (!cur)
            continue;
        for (auto& [name, child] : cur->children)
            work.push_back(std::move(child));
        cur->children.clear();
    }
}

} // namespace

// Where a walk over parent components ended.
struct UnpackRules::Walk {
    Node* dir = nullptr; // nullptr: missing (only when not creating)
    std::string path;    // resolved path of dir, "" for the root
    std::size_t depth = 0;
    bool redirected = false;
};

UnpackRules::UnpackRules(UnpackOptions opts)
    : opts_(std::move(opts))
    , root_(std::make_unique<Node>()) {}

UnpackRules::~UnpackRules() {
    destroy(std::move(root_));
}

void UnpackRules::begin_layer() {
    layer_++;
}

std::vector<Entry> UnpackRules::apply(Entry e) {
    std::vector<Entry> out;
    apply(std::move(e), out);
    return out;
}

// Walk the first n components of comps as directories, resolving symlinks in
// the model inside the image. With create, missing directories are added to
// the model and appended to out; otherwise a missing or non-directory
// component ends the walk with dir == nullptr. The resolved path is held to
// the same limits as names are: symlinks could otherwise stretch it.
UnpackRules::Walk UnpackRules::resolve_parent(const std::vector<std::string>& comps, std::size_t n,
                                              const Entry& e, bool create,
                                              std::vector<Entry>* out) {
    std::vector<Node*> nodes{root_.get()};
    std::vector<std::size_t> lengths; // of path before each component was added
    std::string path;
    std::deque<std::string> todo(comps.begin(), comps.begin() + static_cast<std::ptrdiff_t>(n));
    int links = 0;
    bool redirected = false;
    auto push = [&](const std::string& c, Node* node) {
        if (c.size() > max_name_bytes) // from a symlink's target
            fail(entry_prefix(e.path), "path resolves (through symlinks) to one ",
                 limit_problem(Split::long_name));
        lengths.push_back(path.size());
        if (!path.empty())
            path += '/';
        path += c;
        nodes.push_back(node);
        if (path.size() > max_path_bytes || lengths.size() > max_depth)
            fail(entry_prefix(e.path), "path resolves (through symlinks) to one ",
                 limit_problem(path.size() > max_path_bytes ? Split::too_long : Split::too_deep));
    };
    while (!todo.empty()) {
        std::string c = std::move(todo.front());
        todo.pop_front();
        if (c.empty() || c == ".")
            continue;
        if (c == "..") { // only from symlink targets; stops at the image root
            if (!lengths.empty()) {
                path.resize(lengths.back());
                lengths.pop_back();
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
            push(c, raw);
            Entry d;
            d.path = path;
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
                path.clear();
                lengths.clear();
                nodes.resize(1);
            }
            const auto more = split(child.target, '/');
            todo.insert(todo.begin(), more.begin(), more.end());
            continue;
        }
        if (child.type != EntryType::dir) {
            if (!create)
                return {};
            fail(entry_prefix(e.path), "parent ", quote_name(join_path(path, c)),
                 " is not a directory");
        }
        push(c, &child);
    }
    return {nodes.back(), std::move(path), lengths.size(), redirected};
}

// Emit whiteouts for everything at parent/name that came from an earlier
// layer. A directory of this layer stays, but what earlier layers put in it
// goes (it was hidden together with the earlier directory). Depth first, in
// name order, with an explicit stack.
void UnpackRules::hide_lower(Node& parent, const std::string& name, const std::string& path,
                             std::vector<Entry>& out) {
    struct Item {
        Node* parent;
        std::string name;
        std::string path;
    };

    std::vector<Item> todo{{&parent, name, path}};
    while (!todo.empty()) {
        Item item = std::move(todo.back());
        todo.pop_back();
        const auto it = item.parent->children.find(item.name);
        if (it == item.parent->children.end())
            continue;
        Node& node = *it->second;
        if (node.layer < layer_) {
            Entry w;
            w.path = std::move(item.path);
            w.type = EntryType::whiteout;
            w.mode = 0;
            out.push_back(std::move(w));
            stats_.whiteouts++;
            destroy(std::move(it->second));
            item.parent->children.erase(it);
            continue;
        }
        if (node.type != EntryType::dir)
            continue;
        // Reversed, so the first name is handled first. Erasing a child
        // never invalidates node, which stays.
        for (auto c = node.children.rbegin(); c != node.children.rend(); ++c)
            todo.push_back({&node, c->first, join_path(item.path, c->first)});
    }
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
    const std::string shown = quote_name(e.link_target);
    std::vector<std::string> comps;
    switch (const Split s = split_components(e.link_target, comps)) {
    case Split::ok:
        break;
    case Split::dotdot:
        fail(entry_prefix(e.path), "hard link target ", shown, " leaves the image");
    default:
        fail(entry_prefix(e.path), "hard link target ", shown, " is ", limit_problem(s));
    }
    if (!opts_.strip_top.empty() && !comps.empty() && comps.front() == opts_.strip_top)
        comps.erase(comps.begin());
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
        fail(entry_prefix(e.path), "hard link target ", shown,
             " is not an earlier entry of the image");
    if (node->type == EntryType::dir)
        fail(entry_prefix(e.path), "hard link target ", shown, " is a directory");
    std::string target = join_path(w.path, comps.back());
    if (target == resolved_path)
        fail(entry_prefix(e.path), "hard link to itself");
    if (target.starts_with(resolved_path + "/")) // replacing the directory would remove it
        fail(entry_prefix(e.path), "hard link target ", shown, " is inside the link's own path");
    e.link_target = std::move(target);
    return *node;
}

// Remove the tarbomb's wrapping directory from the front of comps.
void UnpackRules::strip_wrapper(Entry& e, std::vector<std::string>& comps) const {
    if (opts_.strip_top.empty() || comps.empty() || initialising_)
        return;
    if (comps.front() != opts_.strip_top)
        fail(entry_prefix(e.path), "not under ", quote_name(opts_.strip_top),
             " like the entries before it (did the archive change while being read?)");
    comps.erase(comps.begin());
}

void UnpackRules::apply(Entry e, std::vector<Entry>& out) {
    bool absolute = false;
    std::vector<std::string> comps = split_entry_path(e.path, absolute);
    if (absolute)
        stats_.absolute++;
    strip_wrapper(e, comps);
    std::size_t xattr_bytes = 0;
    for (const auto& x : e.xattrs)
        xattr_bytes += x.name.size() + x.value.size();
    check_xattr_limits(e.path, e.xattrs.size(), xattr_bytes);
    if (!comps.empty() &&
        (comps.back().starts_with(whiteout_prefix) || e.type == EntryType::whiteout)) {
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
    std::erase_if(e.xattrs, [&](const Xattr& x) {
        const bool drop = !opts_.keep_xattrs || !x.name.starts_with("user.") ||
                          x.name.starts_with(overlay_xattr_prefix);
        stats_.xattrs_dropped += drop ? 1 : 0;
        return drop;
    });
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
    if (e.type == EntryType::symlink && e.link_target.size() > max_path_bytes)
        fail(entry_prefix(e.path), "symlink target is longer than ", max_path_bytes, " bytes");

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
    if (path.size() > max_path_bytes || w.depth + 1 > max_depth)
        fail(entry_prefix(e.path), "path resolves (through symlinks) to one ",
             limit_problem(path.size() > max_path_bytes ? Split::too_long : Split::too_deep));

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
        destroy(std::exchange(slot, std::move(node)));
    }
    e.path = std::move(path);
    out.push_back(std::move(e));
}

// Whether path is taken in the model (by anything: a symlink in the last
// component is not followed), free, or unusable (its parent is missing or
// not a directory).
bool UnpackRules::exists_nofollow(const std::string& path) {
    std::vector<std::string> comps;
    split_components(path, comps);
    Entry probe;
    probe.path = path;
    const Walk w = resolve_parent(comps, comps.size() - 1, probe, false, nullptr);
    return w.dir == nullptr || w.dir->children.contains(comps.back());
}

void UnpackRules::init_image(std::vector<Entry>& out, std::int64_t mtime) {
    // These names are the image's own, never under a tarbomb's wrapper.
    struct Flag {
        bool& f;

        explicit Flag(bool& flag)
            : f(flag) {
            f = true;
        }

        ~Flag() { f = false; }

        Flag(const Flag&) = delete;
        Flag& operator=(const Flag&) = delete;
    } flag(initialising_);

    auto make = [&](const std::string& path, EntryType type) {
        if (exists_nofollow(path))
            return;
        Entry e;
        e.path = path;
        e.type = type;
        e.mode = type == EntryType::dir ? 0755 : 0644;
        e.mtime = mtime;
        apply(std::move(e), out);
        stats_.init_made++;
    };
    for (const char* d : init_dirs)
        make(d, EntryType::dir);
    for (int i = 0; i <= 9; i++)
        make(cat("mnt/", i), EntryType::dir);
    make("ch", EntryType::dir);
    make("etc/hosts", EntryType::file);
    make("etc/resolv.conf", EntryType::file);
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

// source_layers.cc: see source_layers.hh.
#include "image/source_layers.hh"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "image/formats.hh"
#include "image/unpack_rules.hh"
#include "util/error.hh"
#include "util/strings.hh"

namespace ch::image {

namespace {

constexpr std::string_view whiteout_prefix = ".wh.";
constexpr std::string_view opaque_marker = ".wh..wh..opq";

// What the layers do at one path: the last layer (index) of each kind of
// event there, -1 for none.
struct PathEvents {
    int whiteout = -1; // ".wh.NAME" removed the path and everything under it
    int opaque = -1;   // ".wh..wh..opq" inside it hid what lower layers put under it
    int nondir = -1;   // a file, symlink or hard link was written at it
    int dir = -1;      // a directory was written at it
};

// The metadata of the last directory entry at a path: what a layer-by-layer
// unpack leaves, and so what the one emitted directory entry gets. Kept
// apart from PathEvents, which every path has, to keep the index small.
struct DirMeta {
    mode_t mode = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::int64_t mtime = 0;
    std::vector<Xattr> xattrs;
};

std::string join_path(const std::vector<std::string>& comps, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; i++) {
        if (i > 0)
            s += '/';
        s += comps[i];
    }
    return s;
}

class LayersSource final : public Source {
public:
    LayersSource(std::vector<LayerFile> layers, std::string strip_top, Cancel cancel)
        : layers_(std::move(layers))
        , strip_top_(std::move(strip_top))
        , cancel_(cancel) {
        index();
    }

    bool next(Entry& e) override {
        for (;;) {
            check_cancel(cancel_);
            if (!cur_) {
                if (layer_ >= layers_.size())
                    return false;
                cur_ = make_tar_source(layers_[layer_].path);
            }
            if (!cur_->next(e)) {
                cur_.reset();
                layer_++;
                continue;
            }
            if (keep(e))
                return true;
        }
    }

    std::size_t read(void* buf, std::size_t n) override { return cur_ ? cur_->read(buf, n) : 0; }

    void rewind() override {
        cur_.reset();
        layer_ = 0;
        dirs_emitted_.clear();
    }

    std::string describe() const override {
        if (layers_.empty())
            return "an image without layers";
        const std::size_t i = std::min(layer_, layers_.size() - 1);
        return cat("layer ", i + 1, " of ", layers_.size(), " (", short_digest(layers_[i].digest),
                   ")");
    }

private:
    // Normalised components of e's name, wrapper removed; false for a name
    // the unpacking rules will refuse anyway (they say why).
    bool components(const Entry& e, std::vector<std::string>& comps) const {
        bool absolute = false;
        comps = split_entry_path(e.path, absolute);
        if (!strip_top_.empty() && !comps.empty() && comps.front() == strip_top_)
            comps.erase(comps.begin());
        return true;
    }

    void index() {
        std::vector<std::string> comps;
        for (layer_ = 0; layer_ < layers_.size(); layer_++) {
            const int li = static_cast<int>(layer_);
            auto src = make_tar_source(layers_[layer_].path);
            Entry e;
            while (src->next(e)) {
                check_cancel(cancel_);
                try {
                    components(e, comps);
                } catch (Error& err) {
                    err.add_context(cat("can't unpack ", describe()));
                    throw;
                }
                if (comps.empty()) {
                    if (e.type == EntryType::dir)
                        note_dir("", li, e);
                    continue;
                }
                const std::string& name = comps.back();
                if (name == opaque_marker) {
                    events_[join_path(comps, comps.size() - 1)].opaque = li;
                } else if (name.starts_with(whiteout_prefix)) {
                    comps.back() = name.substr(whiteout_prefix.size());
                    events_[join_path(comps, comps.size())].whiteout = li;
                } else if (e.type == EntryType::dir) {
                    note_dir(join_path(comps, comps.size()), li, e);
                } else {
                    events_[join_path(comps, comps.size())].nondir = li;
                }
            }
        }
        layer_ = 0;
    }

    void note_dir(const std::string& path, int layer, const Entry& e) {
        events_[path].dir = layer;
        dirs_[path] = DirMeta{e.mode, e.uid, e.gid, e.mtime, e.xattrs};
    }

    const PathEvents* find(const std::string& path) const {
        const auto it = events_.find(path);
        return it == events_.end() ? nullptr : &it->second;
    }

    // Whether an entry at comps written by layer li is removed or replaced
    // by a later layer.
    bool hidden_later(const std::vector<std::string>& comps, int li, bool is_dir) const {
        for (std::size_t n = 0; n <= comps.size(); n++) {
            const PathEvents* ev = find(join_path(comps, n));
            if (ev == nullptr)
                continue;
            if (ev->whiteout > li)
                return true;
            if (n < comps.size()) { // a strict parent
                if (ev->opaque > li || ev->nondir > li)
                    return true;
            } else if (ev->nondir > li || (!is_dir && ev->dir > li)) {
                return true;
            }
        }
        return false;
    }

    bool keep(Entry& e) {
        std::vector<std::string> comps;
        components(e, comps); // index() checked every name
        if (!comps.empty() && comps.back().starts_with(whiteout_prefix))
            return false; // applied through the index
        const int li = static_cast<int>(layer_);
        const bool is_dir = e.type == EntryType::dir;
        if (hidden_later(comps, li, is_dir))
            return false;
        const std::string path = join_path(comps, comps.size());
        if (is_dir) {
            if (!dirs_emitted_.insert(path).second)
                return false;
            const DirMeta& last = dirs_.at(path);
            e.mode = last.mode;
            e.uid = last.uid;
            e.gid = last.gid;
            e.mtime = last.mtime;
            e.xattrs = last.xattrs;
        } else if (e.type == EntryType::hardlink) {
            std::vector<std::string> target;
            Entry t;
            t.path = e.link_target;
            components(t, target);
            if (hidden_later(target, li, false))
                fail("can't unpack ", describe(), ": hard link ", quote_name(e.path), " to ",
                     quote_name(e.link_target),
                     ": a later layer removes its target, which a single pass can't write; "
                     "pull into storage instead");
        }
        return true;
    }

    std::vector<LayerFile> layers_;
    std::string strip_top_;
    Cancel cancel_;
    std::map<std::string, PathEvents> events_;
    std::map<std::string, DirMeta> dirs_;
    std::set<std::string> dirs_emitted_;
    std::size_t layer_ = 0;
    std::unique_ptr<Source> cur_;
};

} // namespace

std::string short_digest(std::string_view digest) {
    const std::size_t colon = digest.find(':');
    const std::size_t keep = (colon == std::string_view::npos ? 0 : colon + 1) + 12;
    return printable(digest.substr(0, keep));
}

std::unique_ptr<Source> make_layers_source(std::vector<LayerFile> layers, std::string strip_top,
                                           Cancel cancel) {
    return std::make_unique<LayersSource>(std::move(layers), std::move(strip_top), cancel);
}

} // namespace ch::image

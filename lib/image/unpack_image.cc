// unpack_image.cc: see unpack_image.hh.
#include "image/unpack_image.hh"

#include <algorithm>
#include <cstring>
#include <memory>

#include "image/formats.hh"
#include "image/unpack_rules.hh"
#include "util/log.hh"
#include "util/strings.hh"

namespace ch::image {

namespace {

// The image's own files (metadata), from memory.
class MemorySource final : public Source {
public:
    explicit MemorySource(const std::string& data)
        : data_(data) {}

    bool next(Entry&) override { return false; }

    std::size_t read(void* buf, std::size_t n) override {
        n = std::min(n, data_.size() - pos_);
        std::memcpy(buf, data_.data() + pos_, n);
        pos_ += n;
        return n;
    }

    void rewind() override { pos_ = 0; }

    std::string describe() const override { return "the image's metadata"; }

private:
    const std::string& data_;
    std::size_t pos_ = 0;
};

// A layer's tar source under the name users know it by, for the progress
// line and for messages: "layer 2 of 6 (sha256:1a2b3c4d5e6f)".
class NamedLayer final : public Source {
public:
    NamedLayer(std::unique_ptr<Source> inner, std::string name)
        : inner_(std::move(inner))
        , name_(std::move(name)) {}

    bool next(Entry& e) override { return inner_->next(e); }

    std::size_t read(void* buf, std::size_t n) override { return inner_->read(buf, n); }

    void rewind() override { inner_->rewind(); }

    std::string describe() const override { return name_; }

private:
    std::unique_ptr<Source> inner_;
    std::string name_;
};

void add_own(Sink& sink, UnpackRules& rules, Entry e, const std::string& data,
             const std::string& dest) {
    e.size = data.size();
    for (const Entry& out : rules.apply(std::move(e))) {
        MemorySource src(data);
        try {
            sink.add(out, src);
        } catch (Error& err) {
            err.add_context(cat("can't write ", dest));
            throw;
        }
    }
}

// /ch, /ch/metadata.json and /ch/environment, replacing whatever the layers
// put there (the rules never follow a symlink at the last component, and a
// directory entry replaces a symlink at "ch").
void add_metadata(Sink& sink, UnpackRules& rules, const Metadata& meta, std::int64_t mtime,
                  const std::string& top, const std::string& dest) {
    // Under the tarbomb wrapper, if there is one: the rules remove it from
    // every name they see.
    const std::string ch = top.empty() ? "ch" : cat(top, "/ch");
    Entry dir;
    dir.path = ch;
    dir.type = EntryType::dir;
    dir.mode = 0755;
    dir.mtime = mtime;
    add_own(sink, rules, dir, "", dest);
    std::vector<std::string> dropped;
    const std::string env = environment_text(meta.env, &dropped);
    for (const auto& d : dropped)
        log::warning("not writing to /ch/environment: ", quote_name(d));
    const std::string json = metadata_json(meta);
    for (const auto& [name, data] :
         {std::pair<const char*, const std::string&>{"metadata.json", json},
          {"environment", env}}) {
        Entry f;
        f.path = cat(ch, "/", name);
        f.mode = 0644;
        f.mtime = mtime;
        add_own(sink, rules, f, data, dest);
    }
}

} // namespace

UnpackImageStats unpack_image(const UnpackImageRequest& req, Sink& sink, const std::string& dest,
                              Cancel cancel) {
    UnpackOptions opts;
    opts.keep_xattrs = req.xattrs;
    {
        // Charliecloud's tarbomb rule looks at every layer together.
        TarbombProbe probe;
        for (std::size_t i = 0; i < req.layers.size(); i++) {
            if (req.wait_for_layer)
                req.wait_for_layer(i);
            auto src = make_tar_source(req.layers[i].path);
            probe_tarbomb(*src, probe, cancel);
            if (!probe.wrapper())
                break;
        }
        if (const auto top = probe.wrapper(); top && !req.layers.empty()) {
            log::verbose("every entry is under ", quote_name(*top),
                         "/: unpacking its contents as the image");
            opts.strip_top = *top;
        }
    }
    UnpackRules rules(opts);
    UnpackImageStats st{};
    auto add_stats = [&](const PumpStats& p) {
        st.pump.entries += p.entries;
        st.pump.bytes += p.bytes;
        st.pump.newest_mtime = std::max(st.pump.newest_mtime, p.newest_mtime);
    };
    if (req.merged) {
        for (std::size_t i = 0; req.wait_for_layer && i < req.layers.size(); i++)
            req.wait_for_layer(i);
        auto src = make_layers_source(req.layers, opts.strip_top, cancel);
        add_stats(pump(*src, sink, rules, dest, cancel));
    } else {
        for (std::size_t i = 0; i < req.layers.size(); i++) {
            rules.begin_layer();
            if (req.wait_for_layer)
                req.wait_for_layer(i);
            NamedLayer src(make_tar_source(req.layers[i].path),
                           cat("layer ", i + 1, " of ", req.layers.size(), " (",
                               short_digest(req.layers[i].digest), ")"));
            log::debug("unpacking ", src.describe());
            add_stats(pump(src, sink, rules, dest, cancel));
        }
    }
    check_cancel(cancel);
    st.mtime = st.pump.newest_mtime;
    add_metadata(sink, rules, req.meta, st.mtime, opts.strip_top, dest);
    pump_init(sink, rules, st.mtime, dest);
    st.rules = rules.stats();
    for (const auto& w : rules.warnings())
        log::warning(w);
    return st;
}

} // namespace ch::image

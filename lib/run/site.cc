// site.cc: see site.hh.
#include "run/site.hh"

#include <cstdlib>

#include "run/join.hh"
#include "util/error.hh"
#include "util/log.hh"

namespace ch::run {

namespace {

std::string scalar(const config::Value& v, const YAML::Node& n, std::string_view what) {
    if (!n.IsScalar() || n.Scalar().empty())
        config::fail(config::origin_of(v.origin.file, n), cat(what, " must be a non-empty string"));
    return n.Scalar();
}

// "SRC[:DST]", as -b takes it, or {source: S, target: T, optional: BOOL}.
SiteBind site_bind(const config::Value& v) {
    SiteBind b;
    b.origin = v.origin.str();
    if (v.node.IsScalar()) {
        const std::string s = config::expand_path(scalar(v, v.node, "a bind"));
        const std::size_t colon = s.find(':');
        b.bind.src = s.substr(0, colon);
        b.bind.dst = colon == std::string::npos ? s.substr(0, colon) : s.substr(colon + 1);
        if (b.bind.src.empty() || b.bind.dst.empty())
            config::fail(v.origin, cat("bad bind ", quote_name(s), " (SRC[:DST])"));
    } else if (v.node.IsMap()) {
        for (const auto& kv : v.node) {
            const std::string key = kv.first.Scalar();
            if (key != "source" && key != "target" && key != "optional")
                config::fail(
                    config::origin_of(v.origin.file, kv.first),
                    cat("unknown bind field ", quote_name(key), " (source, target, optional)"));
        }
        if (!v.node["source"])
            config::fail(v.origin, "a bind needs a source");
        b.bind.src = config::expand_path(scalar(v, v.node["source"], "source"));
        b.bind.dst = v.node["target"]
                         ? fs::path(config::expand_path(scalar(v, v.node["target"], "target")))
                         : b.bind.src;
        if (const YAML::Node o = v.node["optional"]) {
            bool opt = false;
            if (!o.IsScalar() || !YAML::convert<bool>::decode(o, opt))
                config::fail(config::origin_of(v.origin.file, o), "optional must be true or false");
            b.optional = opt;
        }
    } else {
        config::fail(v.origin, "a bind is \"SRC[:DST]\" or {source: S, target: T, optional: BOOL}");
    }
    return b;
}

} // namespace

void apply_site_config(const config::Config& cfg, RunOptions& opts) {
    for (const auto& f : cfg.files())
        log::verbose("config: read ", f);
    for (const auto& v : cfg.list("run.binds")) {
        SiteBind b = site_bind(v);
        log::verbose("config: bind ", b.bind.src.string(), " -> ", b.bind.dst.string(),
                     b.optional ? " (optional)" : "", " from ", b.origin);
        opts.site_bind.push_back(std::move(b));
    }
    for (const auto& [name, v] : cfg.map("run.env.set")) {
        if (name.empty() || name.find('=') != std::string::npos)
            config::fail(v.origin, cat("bad variable name ", quote_name(name)));
        if (!v.node.IsScalar())
            config::fail(v.origin, cat("run.env.set.", name, " must be a string"));
        log::verbose("config: set ", name, " from ", v.origin.str());
        opts.site_env_set.emplace_back(name, v.node.Scalar());
    }
    for (const auto& v : cfg.list("run.env.pass")) {
        const std::string p = scalar(v, v.node, "run.env.pass entries");
        if (p.find('*') != std::string::npos && p.find('*') != p.size() - 1)
            config::fail(v.origin, cat("bad pattern ", quote_name(p), " (NAME or PREFIX*)"));
        log::verbose("config: pass ", p, " from ", v.origin.str());
        opts.site_env_pass.push_back(p);
    }
    if (opts.join_timeout) {
        log::verbose("config: join timeout ", opts.join_timeout->count(),
                     " ms from --join-timeout");
    } else if (const char* env = std::getenv("CH_JOIN_TIMEOUT")) {
        opts.join_timeout = parse_join_timeout(env);
        if (!opts.join_timeout)
            fail("bad CH_JOIN_TIMEOUT=", printable(env),
                 " (seconds, more than 0 and at most 86400, e.g. 30 or 2.5)");
        log::verbose("config: join timeout ", env, " s from $CH_JOIN_TIMEOUT");
    } else if (const auto t = cfg.integer("run.join-timeout", 1, 86400)) {
        opts.join_timeout = std::chrono::seconds(t->value);
        log::verbose("config: join timeout ", t->value, " s from ", t->origin.str());
    }
}

} // namespace ch::run

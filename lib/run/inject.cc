// inject.cc: see inject.hh.
#include "run/inject.hh"

#include <climits>
#include <map>
#include <set>

#include <fcntl.h>
#include <unistd.h>

#include "image/elf.hh"
#include "util/config.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

namespace ch::run {

namespace {

// An absolute path, lexically normalised; relative ones would depend on the
// directory ch-run happens to start in.
std::string absolute(const config::Value& v, const YAML::Node& n, std::string_view what) {
    if (!n.IsScalar())
        config::fail(config::origin_of(v.origin.file, n), cat(what, " must be a path"));
    const std::string p = config::expand_path(n.Scalar());
    if (p.empty() || p[0] != '/')
        config::fail(config::origin_of(v.origin.file, n),
                     cat(what, " must be an absolute path: ", printable(p)));
    return normalize_abs(p);
}

void add_set(const std::string& name, const config::Value& set, std::vector<Bind>& out) {
    if (!set.node.IsSequence())
        config::fail(set.origin, cat("run.inject.", name, " must be a list of paths"));
    log::verbose("inject set ", name, " from ", set.origin.str());
    for (const auto& n : set.node) {
        Bind b;
        b.need = Need::make_dst;
        if (n.IsMap()) {
            for (const auto& kv : n) {
                const std::string k = kv.first.as<std::string>();
                if (k != "source" && k != "target")
                    config::fail(config::origin_of(set.origin.file, kv.first),
                                 cat("run.inject.", name, ": unknown key ", printable(k),
                                     " (expected source, target)"));
            }
            if (!n["source"])
                config::fail(config::origin_of(set.origin.file, n),
                             cat("run.inject.", name, ": entry without source"));
            b.src = absolute(set, n["source"], "source");
            b.dst = n["target"] ? absolute(set, n["target"], "target") : b.src.string();
        } else {
            b.src = absolute(set, n, cat("run.inject.", name, " entry"));
            b.dst = b.src;
        }
        if (b.dst == "/")
            config::fail(config::origin_of(set.origin.file, n),
                         cat("run.inject.", name, ": target can't be the image root"));
        out.push_back(std::move(b));
    }
}

// A path's directory and last name, as parent_path() and filename() would
// give them ("/a/b" -> "/a", "b"; "/b" -> "/", "b"; "a/" -> "a", ""), with
// no fs::path parsing: ch-run does this for every library at every start.
std::pair<std::string, std::string> split_last(const std::string& path) {
    const std::size_t slash = path.rfind('/');
    if (slash == std::string::npos)
        return {"", path};
    return {path.substr(0, slash == 0 ? 1 : slash), path.substr(slash + 1)};
}

} // namespace

std::vector<Bind> inject_binds(const config::Config& cfg, const std::vector<std::string>& sets) {
    const auto all = cfg.map("run.inject");
    std::vector<Bind> out;
    if (sets.empty()) {
        if (all.empty())
            throw UsageError("--inject: the configuration names no sets (run.inject in "
                             "/etc/ch/config.yaml or ~/.config/ch/config.yaml)");
        for (const auto& [name, v] : all)
            add_set(name, v, out);
    } else {
        std::set<std::string> done;
        for (const auto& s : sets) {
            const auto it = all.find(s);
            if (it == all.end()) {
                std::vector<std::string> names;
                for (const auto& kv : all)
                    names.push_back(kv.first);
                throw UsageError(cat("--inject: no set ", printable(s), " in the configuration",
                                     names.empty() ? std::string(" (it names none)")
                                                   : cat(" (it has: ", join(names, ", "), ")")));
            }
            if (done.insert(s).second)
                add_set(s, it->second, out);
        }
    }
    return out;
}

Injection group_libraries(const std::vector<Bind>& binds) {
    Injection inj;
    std::map<std::string, std::string> dirs; // host directory -> its mount point
    std::map<std::string, Fd> parents;       // each source's directory, opened once
    std::vector<Bind> rest;
    for (const auto& b : binds) {
        // ch-run does this for every library at every start: a directory is
        // walked once, and O_NOFOLLOW says whether the name is the file itself
        // (then its directory is the one to bind), with no look into /proc
        // unless it is a link.
        const auto [parent, base] = split_last(b.src.native());
        auto [p, p_fresh] = parents.try_emplace(parent);
        if (p_fresh)
            p->second = try_open_at(AT_FDCWD, parent, O_PATH | O_DIRECTORY);
        constexpr int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY;
        bool linked = false;
        Fd fd;
        if (p->second && !base.empty()) {
            fd = try_open_at(p->second.get(), base, flags | O_NOFOLLOW);
            if (!fd && errno == ELOOP) {
                linked = true;
                fd = try_open_at(p->second.get(), base, flags);
            }
        }
        // Missing sources are the bind step's to report, with its wording.
        const auto elf = fd ? image::read_elf(fd.get(), b.src.string()) : std::nullopt;
        if (!elf || !elf->shared || !elf->soname) {
            rest.push_back(b);
            continue;
        }
        const std::int32_t cache_flags = image::ld_cache_flags(*elf);
        if (b.dst != b.src) { // a target of its own: bound there, alone
            inj.libs.push_back({*elf->soname, b.dst.string(), cache_flags, 0});
            rest.push_back(b);
            continue;
        }
        // A link's target could be outside the directory bound: then the
        // file itself, by the name the kernel has for it.
        std::string real = b.src.native();
        if (linked) {
            char buf[PATH_MAX];
            const ssize_t n = ::readlink(fd.proc_path().c_str(), buf, sizeof buf);
            if (n <= 0 || n >= static_cast<ssize_t>(sizeof buf) || buf[0] != '/') {
                rest.push_back(b);
                continue;
            }
            real = std::string(buf, static_cast<std::size_t>(n));
        }
        const auto [real_dir, real_name] = split_last(real);
        auto [at, fresh] = dirs.emplace(real_dir, "");
        if (fresh) {
            at->second = cat(inject_dir, "/", dirs.size() - 1);
            inj.binds.push_back({at->first, at->second, Need::make_dst});
            inj.upper_paths.push_back(at->second.substr(1) + "/");
        }
        inj.libs.push_back({*elf->soname, cat(at->second, "/", real_name), cache_flags, 0});
    }
    inj.binds.insert(inj.binds.end(), rest.begin(), rest.end());
    return inj;
}

Injection prepare_injection(const config::Config& cfg, const std::vector<std::string>& sets) {
    const auto binds = inject_binds(cfg, sets);
    Injection inj = group_libraries(binds);
    log::verbose("inject: ", binds.size(), " files, ", inj.libs.size(), " libraries");
    return inj;
}

} // namespace ch::run

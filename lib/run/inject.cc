// inject.cc: see inject.hh.
#include "run/inject.hh"

#include <algorithm>
#include <climits>
#include <map>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
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

void add_set(const std::string& name, const config::Value& set, std::vector<InjectFile>& out) {
    if (!set.node.IsSequence())
        config::fail(set.origin, cat("run.inject.", name, " must be a list of paths"));
    log::verbose("inject set ", name, " from ", set.origin.str());
    out.reserve(out.size() + set.node.size());
    for (const auto& n : set.node) {
        InjectFile b;
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
            b.dst = n["target"] ? absolute(set, n["target"], "target") : b.src;
        } else if (n.IsScalar() && !n.Scalar().empty() &&
                   n.Scalar().find('/') == std::string::npos) {
            // A library's name: the host's ld.so.cache says where it is.
            const std::string& lib = n.Scalar();
            if (lib == "." || lib == "..")
                config::fail(config::origin_of(set.origin.file, n),
                             cat("run.inject.", name,
                                 " entry must be a path or a library name: ", printable(lib)));
            b.src = b.dst = lib;
            b.by_name = true;
            b.origin = config::origin_of(set.origin.file, n).str();
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
std::pair<std::string_view, std::string_view> split_last(std::string_view path) {
    const std::size_t slash = path.rfind('/');
    if (slash == std::string_view::npos)
        return {"", path};
    return {path.substr(0, slash == 0 ? 1 : slash), path.substr(slash + 1)};
}

} // namespace

std::vector<InjectFile> inject_files(const config::Config& cfg,
                                     const std::vector<std::string>& sets) {
    const auto all = cfg.map("run.inject");
    std::vector<InjectFile> out;
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

Injection group_libraries(const std::vector<InjectFile>& files,
                          std::optional<std::string_view> host_cache) {
    // ch-run does this for every library at every start, so it allocates
    // little: a directory is opened once (and looked up in a short list, as
    // there are few), names are views into the entries, and O_NOFOLLOW says
    // whether a name is the file itself (then its directory is the one to
    // bind), with no look into /proc unless it is a link.
    Injection inj;
    inj.libs.reserve(files.size());
    std::map<std::string, std::string, std::less<>> dirs; // host directory -> its mount point
    std::vector<std::pair<std::string_view, Fd>> parents; // each source's directory, opened once
    std::vector<Bind> rest;
    const auto alone = [&](const InjectFile& f) {
        rest.push_back({f.src, f.dst, Need::make_dst});
    };
    // A library at host path real (a file, or a link in its directory),
    // bound with the rest of that directory.
    const auto by_directory = [&](std::string_view real, std::string soname, std::int32_t flags) {
        const auto [real_dir, real_name] = split_last(real);
        auto at = dirs.find(real_dir);
        if (at == dirs.end()) {
            at = dirs.emplace(real_dir, cat(inject_dir, "/", dirs.size())).first;
            inj.binds.push_back({at->first, at->second, Need::make_dst});
            inj.upper_paths.push_back(at->second.substr(1) + "/");
        }
        inj.libs.push_back({std::move(soname), cat(at->second, "/", real_name), flags, 0});
    };
    const std::int32_t native = image::native_ld_cache_flags();
    for (const auto& f : files) {
        if (f.by_name) {
            std::optional<image::LdCacheRef> e;
            try {
                if (host_cache)
                    e = image::find_ld_cache(*host_cache, f.src, native);
            } catch (const Error& err) {
                throw Error(cat("--inject: the host's /etc/ld.so.cache: ", err.what()));
            }
            if (!e || e->value.empty() || e->value[0] != '/')
                throw Error(cat("--inject: no library ", printable(f.src),
                                " in the host's /etc/ld.so.cache for this machine (", f.origin,
                                "); give its path instead"));
            log::verbose("inject ", f.src, ": ", e->value, " (the host's ld.so.cache)");
            by_directory(e->value, f.src, e->flags);
            continue;
        }
        const std::string& src = f.src;
        const auto [parent, base] = split_last(src);
        auto p = std::find_if(parents.begin(), parents.end(),
                              [&](const auto& d) { return d.first == parent; });
        if (p == parents.end()) {
            parents.emplace_back(parent, Fd(::openat(AT_FDCWD, std::string(parent).c_str(),
                                                     O_PATH | O_DIRECTORY | O_CLOEXEC)));
            p = parents.end() - 1;
        }
        // base ends where src does, so it is NUL-terminated.
        constexpr int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
        bool linked = false;
        Fd fd;
        if (p->second && !base.empty()) {
            fd = Fd(::openat(p->second.get(), base.data(), flags | O_NOFOLLOW));
            if (!fd && errno == ELOOP) {
                linked = true;
                fd = Fd(::openat(p->second.get(), base.data(), flags));
            }
        }
        // Missing sources are the bind step's to report, with its wording.
        const auto elf = fd ? image::read_elf(fd.get(), src) : std::nullopt;
        if (!elf || !elf->shared || !elf->soname) {
            alone(f);
            continue;
        }
        const std::int32_t cache_flags = image::ld_cache_flags(*elf);
        if (f.dst != src) { // a target of its own: bound there, alone
            inj.libs.push_back({*elf->soname, f.dst, cache_flags, 0});
            alone(f);
            continue;
        }
        // A link's target could be outside the directory bound: then the
        // file itself, by the name the kernel has for it.
        std::string_view real = src;
        char buf[PATH_MAX];
        if (linked) {
            const ssize_t n = ::readlink(fd.proc_path().c_str(), buf, sizeof buf);
            if (n <= 0 || n >= static_cast<ssize_t>(sizeof buf) || buf[0] != '/') {
                alone(f);
                continue;
            }
            real = std::string_view(buf, static_cast<std::size_t>(n));
        }
        by_directory(real, *elf->soname, cache_flags);
    }
    inj.binds.insert(inj.binds.end(), rest.begin(), rest.end());
    return inj;
}

MappedFile host_ld_cache(const char* path) {
    const Fd fd(::open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (!fd)
        throw_errno("--inject: library names need the host's ", path);

    struct stat st {};

    if (::fstat(fd.get(), &st) != 0)
        throw_errno("--inject: can't stat ", path);
    if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0)
        throw Error(cat("--inject: ", path,
                        " is not a regular file of root's that only root may write; "
                        "give library paths instead of names"));
    auto bytes = MappedFile::map(fd.get(), image::ld_cache_max_bytes, path);
    if (!bytes)
        throw_errno("--inject: can't read ", path);
    return std::move(*bytes);
}

Injection prepare_injection(const config::Config& cfg, const std::vector<std::string>& sets) {
    const auto files = inject_files(cfg, sets);
    std::optional<MappedFile> host;
    if (std::any_of(files.begin(), files.end(), [](const auto& f) { return f.by_name; }))
        host = host_ld_cache();
    Injection inj = group_libraries(files, host ? std::optional(host->view()) : std::nullopt);
    if (host)
        host->keep_until_exec(); // ch-run execs soon after
    log::verbose("inject: ", files.size(), " files, ", inj.libs.size(), " libraries");
    return inj;
}

} // namespace ch::run

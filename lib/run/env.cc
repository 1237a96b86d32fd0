// env.cc: see env.hh. The quirks (the substring test on PATH, expansion only of
// whole $NAME items) are Charliecloud's, kept so job scripts behave the same.
#include "run/env.hh"

#include <algorithm>

#include <fnmatch.h>

#include "util/error.hh"
#include "util/log.hh"

namespace ch::run {

std::pair<std::string, std::string> parse_env_assignment(std::string_view s,
                                                         std::string_view what) {
    const std::size_t eq = s.find('=');
    if (eq == std::string_view::npos)
        fail("can't parse ", what, ": no '=' in ", printable(s));
    if (eq == 0)
        fail("can't parse ", what, ": empty name in ", printable(s));
    std::string value(s.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'')
        value = value.substr(1, value.size() - 2);
    return {std::string(s.substr(0, eq)), value};
}

EnvVars parse_env_text(std::string_view text, char sep, std::string_view what) {
    EnvVars out;
    std::size_t line = 0;
    for (const auto& rec : split(text, sep)) {
        line++;
        if (rec.empty())
            continue;
        out.push_back(
            parse_env_assignment(rec, cat(what, sep == '\n' ? " line " : " record ", line)));
    }
    return out;
}

namespace {
const std::string* find(const EnvVars& env, std::string_view name) {
    for (const auto& [k, v] : env)
        if (k == name)
            return &v;
    return nullptr;
}

void set(EnvVars& env, const std::string& name, const std::string& value) {
    for (auto& [k, v] : env)
        if (k == name) {
            v = value;
            return;
        }
    env.emplace_back(name, value);
}

void unset(EnvVars& env, std::string_view name) {
    std::erase_if(env, [&](const auto& kv) { return kv.first == name; });
}
} // namespace

std::string expand_value(std::string_view value, const EnvVars& env) {
    std::vector<std::string> kept;
    for (const auto& item : split(value, ':')) {
        if (item.size() > 1 && item[0] == '$') {
            const std::string* v = find(env, std::string_view(item).substr(1));
            if (v != nullptr && !v->empty())
                kept.push_back(*v);
        } else {
            kept.push_back(item);
        }
    }
    return join(kept, ":");
}

std::string fix_path(const std::string& path) {
    if (path.starts_with("/bin") || path.find(":/bin") != std::string::npos)
        return path;
    return path + ":/bin";
}

const std::vector<std::string>& launcher_env() {
    static const std::vector<std::string> pass = {"SLURM_*", "PMIX_*", "PMI_*", "OMPI_*", "PRTE_*"};
    return pass;
}

namespace {
// NAME, or PREFIX* (a trailing star only: site files should not need globs).
bool passes(const std::vector<std::string>& patterns, std::string_view name) {
    for (const auto& p : patterns)
        if (p.ends_with('*') ? name.starts_with(std::string_view(p).substr(0, p.size() - 1))
                             : name == p)
            return true;
    return false;
}
} // namespace

EnvVars build_environment(const std::vector<std::string>& host, const EnvInputs& in) {
    EnvVars env;
    for (const auto& kv : host) {
        const std::size_t eq = kv.find('=');
        if (eq == std::string::npos || eq == 0)
            continue; // not an assignment; nothing a program could read by name
        env.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
    set(env, "HOME", in.home);
    if (const std::string* path = find(env, "PATH"); path == nullptr)
        log::warning("$PATH not set");
    else
        set(env, "PATH", fix_path(*path));
    unset(env, "TMPDIR");
    const EnvVars from_host = env;
    for (const auto& [k, v] : in.site_set)
        set(env, k, v);
    for (const auto& d : in.deltas) {
        if (d.kind == EnvDelta::Kind::unset) {
            std::erase_if(env, [&](const auto& kv) {
                return ::fnmatch(d.glob.c_str(), kv.first.c_str(), FNM_EXTMATCH) == 0;
            });
            continue;
        }
        for (const auto& [k, v] : d.vars)
            set(env, k, in.no_expand ? v : expand_value(v, env));
    }
    for (const auto& [k, v] : from_host)
        if (find(env, k) == nullptr && (passes(launcher_env(), k) || passes(in.pass, k)))
            env.emplace_back(k, v);
    set(env, "CH_RUNNING", ch_running_value);
    return env;
}

} // namespace ch::run

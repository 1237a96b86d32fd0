// config.cc: reading and checking the YAML configuration files.
#include "util/config.hh"

#include <cctype>
#include <cstdlib>
#include <string>

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

namespace ch::config {

namespace {

// A configuration file is a few lines; anything near this is a mistake
// (a wrong path), not a file to parse.
constexpr std::size_t max_file_bytes = 1 << 20;

enum class Kind {
    string,
    boolean,
    integer,
    list,
    section, // a map whose keys are in this table
    table,   // a map whose keys are the user's (hosts, variable names, set names)
};

struct Key {
    std::string_view path;
    Kind kind;
};

// Every setting any tool reads. One table, so that a typo in a site file is
// reported by whichever tool reads it first.
constexpr Key schema[] = {
    {"storage", Kind::string},
    {"registry", Kind::section},
    {"registry.mirrors", Kind::table},
    {"registry.insecure", Kind::list},
    {"registry.ca-file", Kind::string},
    {"registry.tls-verify", Kind::boolean},
    {"registry.parallel", Kind::integer},
    {"registry.auth", Kind::table},
    {"run", Kind::section},
    {"run.binds", Kind::list},
    {"run.env", Kind::section},
    {"run.env.set", Kind::table},
    {"run.env.pass", Kind::list},
    {"run.join-timeout", Kind::integer},
    {"run.inject", Kind::table},
};

const Key* find_key(std::string_view path) {
    for (const Key& k : schema)
        if (k.path == path)
            return &k;
    return nullptr;
}

std::string env_or(const char* name, std::string_view dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : std::string(dflt);
}

std::string home_dir() {
    if (const char* h = std::getenv("HOME"); h && *h)
        return h;
    if (const passwd* pw = ::getpwuid(::geteuid()); pw && pw->pw_dir)
        return pw->pw_dir;
    return {};
}

std::string user_name() {
    if (const char* u = std::getenv("USER"); u && *u)
        return u;
    if (const passwd* pw = ::getpwuid(::geteuid()); pw && pw->pw_name)
        return pw->pw_name;
    return {};
}

bool is_bool(const YAML::Node& n) {
    bool b;
    return YAML::convert<bool>::decode(n, b);
}

bool is_integer(const YAML::Node& n) {
    try {
        (void)n.as<long long>();
        return true;
    } catch (const YAML::Exception&) {
        return false;
    }
}

const char* kind_name(Kind k) {
    switch (k) {
    case Kind::string:
        return "a string";
    case Kind::boolean:
        return "true or false";
    case Kind::integer:
        return "an integer";
    case Kind::list:
        return "a list";
    case Kind::section:
    case Kind::table:
        return "a mapping";
    }
    return "?";
}

bool has_kind(const YAML::Node& n, Kind k) {
    switch (k) {
    case Kind::string:
        return n.IsScalar();
    case Kind::boolean:
        return n.IsScalar() && is_bool(n);
    case Kind::integer:
        return n.IsScalar() && is_integer(n);
    case Kind::list:
        return n.IsSequence();
    case Kind::section:
    case Kind::table:
        return n.IsMap();
    }
    return false;
}

// Types are checked when the file is read, not when a value is used, so a
// broken site file fails every tool the same way instead of only the one
// that happens to read the bad key. Unknown keys are only warned about: a
// site file written for a newer version must not stop an older ch-run.
void check_section(const std::string& file, const YAML::Node& map, const std::string& prefix) {
    for (const auto& kv : map) {
        if (!kv.first.IsScalar())
            fail(origin_of(file, kv.first), "keys must be plain names");
        const std::string name = kv.first.Scalar();
        const std::string path = prefix.empty() ? name : prefix + "." + name;
        const Key* key = find_key(path);
        if (key == nullptr) {
            log::warning(origin_of(file, kv.first).str(), ": unknown setting ", quote_name(path),
                         " ignored");
            continue;
        }
        if (kv.second.IsNull())
            continue; // "key:" with nothing after it: not set
        if (!has_kind(kv.second, key->kind))
            fail(origin_of(file, kv.second), cat(path, " must be ", kind_name(key->kind)));
        if (key->kind == Kind::section)
            check_section(file, kv.second, path);
    }
}

std::vector<std::string> split_key(std::string_view key) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = key.find('.', start);
        parts.emplace_back(key.substr(start, dot - start));
        if (dot == std::string_view::npos)
            return parts;
        start = dot + 1;
    }
}

} // namespace

std::string Origin::str() const {
    if (line == 0)
        return file;
    return cat(file, ":", line, ":", column);
}

Origin origin_of(const std::string& file, const YAML::Node& node) {
    const YAML::Mark m = node.Mark();
    if (m.is_null())
        return Origin{file};
    return Origin{file, m.line + 1, m.column + 1};
}

void fail(const Origin& at, std::string_view why) {
    throw Error(cat("can't read config ", at.str(), ": ", why));
}

Config Config::load() {
    const std::string site = env_or("CH_CONFIG_SITE", "/etc/ch/config.yaml");
    std::string user = env_or("CH_CONFIG_USER", "");
    if (user.empty()) {
        const char* xdg = std::getenv("XDG_CONFIG_HOME");
        if (xdg && xdg[0] == '/')
            user = std::string(xdg) + "/ch/config.yaml";
        else if (const std::string home = home_dir(); !home.empty())
            user = home + "/.config/ch/config.yaml";
    }
    return load_files(site, user);
}

Config Config::load_files(const std::string& site, const std::string& user) {
    Config c;
    for (const std::string& path : {site, user}) {
        if (path.empty())
            continue;
        Fd fd = try_open_at(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
        if (!fd) {
            if (errno == ENOENT || errno == ENOTDIR)
                continue;
            throw_errno("can't read config ", path);
        }
        struct stat st;
        if (::fstat(fd.get(), &st) != 0)
            throw_errno("can't read config ", path);
        if (!S_ISREG(st.st_mode))
            throw Error(cat("can't read config ", path, ": not a regular file"));
        const std::string text = read_all(fd.get(), cat("config ", path), max_file_bytes);
        YAML::Node root;
        try {
            root = YAML::Load(text);
        } catch (const YAML::ParserException& e) {
            fail(Origin{path, e.mark.line + 1, e.mark.column + 1}, e.msg);
        }
        if (!root.IsNull() && !root.IsMap())
            fail(origin_of(path, root), "the file must be a mapping of settings");
        if (root.IsMap())
            check_section(path, root, "");
        c.files_.push_back(File{path, root});
    }
    return c;
}

std::vector<Value> Config::lookup(std::string_view key) const {
    const std::vector<std::string> parts = split_key(key);
    std::vector<Value> found;
    for (auto f = files_.rbegin(); f != files_.rend(); ++f) {
        // Nodes are references: assigning one writes into the tree, and a
        // non-const operator[] inserts. So descend with reset() through
        // const nodes.
        // A missing key gives an invalid node, which only IsDefined() may
        // be asked about.
        YAML::Node n = f->root;
        bool present = true;
        for (const std::string& p : parts) {
            const YAML::Node& cn = n;
            const YAML::Node child = n.IsMap() ? cn[p] : YAML::Node(YAML::NodeType::Undefined);
            if (!child.IsDefined()) {
                present = false;
                break;
            }
            n.reset(child);
        }
        if (present && !n.IsNull())
            found.push_back(Value{n, origin_of(f->path, n)});
    }
    return found;
}

std::optional<Setting<std::string>> Config::string(std::string_view key) const {
    const auto found = lookup(key);
    if (found.empty())
        return std::nullopt;
    const Value& v = found.front();
    if (!v.node.IsScalar())
        fail(v.origin, cat(key, " must be a string"));
    return Setting<std::string>{v.node.Scalar(), v.origin};
}

std::optional<Setting<bool>> Config::boolean(std::string_view key) const {
    const auto found = lookup(key);
    if (found.empty())
        return std::nullopt;
    const Value& v = found.front();
    bool b = false;
    if (!v.node.IsScalar() || !YAML::convert<bool>::decode(v.node, b))
        fail(v.origin, cat(key, " must be true or false"));
    return Setting<bool>{b, v.origin};
}

std::optional<Setting<long long>> Config::integer(std::string_view key, long long min,
                                                  long long max) const {
    const auto found = lookup(key);
    if (found.empty())
        return std::nullopt;
    const Value& v = found.front();
    long long i = 0;
    bool ok = v.node.IsScalar();
    if (ok) {
        try {
            i = v.node.as<long long>();
        } catch (const YAML::Exception&) {
            ok = false;
        }
    }
    if (!ok || i < min || i > max)
        fail(v.origin, cat(key, " must be an integer from ", min, " to ", max));
    return Setting<long long>{i, v.origin};
}

std::vector<Value> Config::list(std::string_view key) const {
    std::vector<Value> out;
    const auto found = lookup(key);
    for (auto f = found.rbegin(); f != found.rend(); ++f) { // site's first
        if (!f->node.IsSequence())
            fail(f->origin, cat(key, " must be a list"));
        for (const auto& item : f->node)
            out.push_back(Value{item, origin_of(f->origin.file, item)});
    }
    return out;
}

std::map<std::string, Value> Config::map(std::string_view key) const {
    std::map<std::string, Value> out;
    const auto found = lookup(key);
    for (auto f = found.rbegin(); f != found.rend(); ++f) { // user's last, so it wins
        if (!f->node.IsMap())
            fail(f->origin, cat(key, " must be a mapping"));
        for (const auto& kv : f->node) {
            if (!kv.first.IsScalar())
                fail(origin_of(f->origin.file, kv.first), "keys must be plain names");
            out.insert_or_assign(kv.first.Scalar(),
                                 Value{kv.second, origin_of(f->origin.file, kv.second)});
        }
    }
    return out;
}

std::vector<std::string> Config::files() const {
    std::vector<std::string> out;
    for (const File& f : files_)
        out.push_back(f.path);
    return out;
}

std::string expand_path(std::string_view path) {
    std::string out;
    if (path == "~" || path.starts_with("~/")) {
        out = home_dir();
        path.remove_prefix(1);
    }
    while (!path.empty()) {
        const std::size_t dollar = path.find('$');
        out += path.substr(0, dollar);
        if (dollar == std::string_view::npos)
            break;
        path.remove_prefix(dollar);
        bool done = false;
        for (const auto& [word, value] :
             {std::pair<std::string_view, std::string>{"${USER}", user_name()},
              {"${HOME}", home_dir()},
              {"$USER", user_name()},
              {"$HOME", home_dir()}}) {
            if (path.starts_with(word)) {
                // "$USERS" is not "$USER" followed by "S".
                const std::string_view rest = path.substr(word.size());
                if (word[1] != '{' && !rest.empty() &&
                    (std::isalnum(static_cast<unsigned char>(rest[0])) || rest[0] == '_'))
                    continue;
                out += value;
                path = rest;
                done = true;
                break;
            }
        }
        if (!done) {
            out += '$';
            path.remove_prefix(1);
        }
    }
    return out;
}

} // namespace ch::config

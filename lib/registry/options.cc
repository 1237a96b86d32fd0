// options.cc: Options from the configuration files and the CH_IMAGE_*
// variables. Each setting is logged at -v with where it came from; secrets
// never are.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>

#include "registry/client.hh"
#include "util/config.hh"
#include "util/fd.hh"
#include "util/log.hh"
#include "util/strings.hh"

namespace ch::registry {

namespace {

std::string scalar(const config::Value& v, std::string_view what) {
    if (!v.node.IsScalar())
        config::fail(v.origin, cat(what, " must be a string"));
    return v.node.as<std::string>();
}

Credentials read_auth(const std::string& host, const config::Value& v) {
    if (!v.node.IsMap())
        config::fail(v.origin, cat("registry.auth.", host,
                                   " must be a map with username and password or password-file"));
    Credentials c;
    const auto user = v.node["username"];
    if (!user || !user.IsScalar())
        config::fail(v.origin, cat("registry.auth.", host, " has no username"));
    c.username = user.as<std::string>();
    const auto pass = v.node["password"];
    const auto file = v.node["password-file"];
    if (pass && file)
        config::fail(v.origin, cat("registry.auth.", host, " has both password and password-file"));
    if (pass) {
        if (!pass.IsScalar())
            config::fail(v.origin, cat("registry.auth.", host, ".password must be a string"));
        c.password = pass.as<std::string>();
    } else if (file) {
        if (!file.IsScalar())
            config::fail(v.origin, cat("registry.auth.", host, ".password-file must be a path"));
        const auto path = config::expand_path(file.as<std::string>());
        Fd fd = try_open_at(AT_FDCWD, path, O_RDONLY);
        if (!fd)
            config::fail(config::origin_of(v.origin.file, file),
                         cat("can't open password file ", path, ": ", std::strerror(errno)));

        struct stat st {};

        if (::fstat(fd.get(), &st) == 0 && (st.st_mode & 0077)) {
            char mode[8];
            std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
            log::warning("password file ", path, " is open to others (mode ", mode,
                         "); chmod 600 it");
        }
        c.password = read_all(fd.get(), path, 4096);
        while (!c.password.empty() && (c.password.back() == '\n' || c.password.back() == '\r'))
            c.password.pop_back();
    } else {
        config::fail(v.origin, cat("registry.auth.", host, " has no password or password-file"));
    }
    return c;
}

} // namespace

Options Options::from(const config::Config& cfg) {
    Options o;
    if (auto s = cfg.boolean("registry.tls-verify")) {
        o.tls_verify = s->value;
        log::verbose("registry.tls-verify: ", s->value ? "yes" : "no", " (", s->origin.str(), ")");
    }
    if (auto s = cfg.string("registry.ca-file")) {
        o.ca_file = config::expand_path(s->value);
        log::verbose("registry.ca-file: ", o.ca_file, " (", s->origin.str(), ")");
    }
    if (auto s = cfg.integer("registry.parallel", 1, 64)) {
        o.parallel = static_cast<int>(s->value);
        log::verbose("registry.parallel: ", o.parallel, " (", s->origin.str(), ")");
    }
    for (const auto& v : cfg.list("registry.insecure")) {
        o.insecure.push_back(scalar(v, "registry.insecure entry"));
        log::verbose("registry.insecure: ", o.insecure.back(), " (", v.origin.str(), ")");
    }
    for (const auto& [host, v] : cfg.map("registry.mirrors")) {
        o.mirrors[host] = scalar(v, cat("registry.mirrors.", host));
        log::verbose("registry.mirrors: ", host, " -> ", o.mirrors[host], " (", v.origin.str(),
                     ")");
    }
    for (const auto& [host, v] : cfg.map("registry.auth")) {
        o.host_credentials[host] = read_auth(host, v);
        log::verbose("registry.auth: credentials for ", host, " (", v.origin.str(), ")");
    }
    const char* user = std::getenv("CH_IMAGE_USERNAME");
    const char* pass = std::getenv("CH_IMAGE_PASSWORD");
    if (user && *user && pass) {
        o.credentials = Credentials{user, pass};
        log::verbose(
            "credentials for every registry from $CH_IMAGE_USERNAME and $CH_IMAGE_PASSWORD");
    } else if ((user && *user) != (pass != nullptr)) {
        log::warning("only one of CH_IMAGE_USERNAME and CH_IMAGE_PASSWORD is set; ignoring it");
    }
    return o;
}

} // namespace ch::registry

// config.hh: the configuration files, site's and user's, in YAML.
//
// Precedence is command line > CH_* environment > the user's file > the
// site's file. This module covers the last two; each tool applies its own
// options and environment on top. Every value keeps its Origin so that `-v`
// can say where a setting came from and errors can point at a line.
//
// The files are read whole at start-up by every tool, ch-run included, so
// loading is one read and one parse per file, with no other work: values are
// converted when asked for.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace ch::config {

// Where a value came from: a file position, or (line 0) a name such as
// "--storage" or "$CH_IMAGE_STORAGE" that callers give their own settings.
struct Origin {
    std::string file;
    int line = 0; // 1-based; 0 if not a file position
    int column = 0;

    std::string str() const; // "FILE:LINE:COL", or just the name
};

template <class T>
struct Setting {
    T value;
    Origin origin;
};

// A raw node, for structured entries (binds, credentials, inject sets).
struct Value {
    YAML::Node node;
    Origin origin;
};

class Config {
public:
    // The site file is $CH_CONFIG_SITE, else /etc/ch/config.yaml; the user's
    // is $CH_CONFIG_USER, else $XDG_CONFIG_HOME/ch/config.yaml, else
    // $HOME/.config/ch/config.yaml. The overrides exist for tests and for
    // sites that keep the file elsewhere; a user could equally pass options,
    // so they grant nothing. A missing file is no error; an unreadable or
    // malformed one is, naming FILE:LINE:COL.
    static Config load();
    // Either path may be empty (no such file).
    static Config load_files(const std::string& site, const std::string& user);

    // Scalars: the user's file wins over the site's. key is dotted
    // ("registry.ca-file"). A value of the wrong type is an error at its
    // position.
    std::optional<Setting<std::string>> string(std::string_view key) const;
    std::optional<Setting<bool>> boolean(std::string_view key) const;
    std::optional<Setting<long long>> integer(std::string_view key, long long min,
                                              long long max) const;

    // Lists add up across files, the site's entries first: a site's binds
    // stay when a user adds one.
    std::vector<Value> list(std::string_view key) const;
    // Maps merge across files; the user's entry wins per key.
    std::map<std::string, Value> map(std::string_view key) const;

    // The files actually read, site's first.
    std::vector<std::string> files() const;

private:
    struct File {
        std::string path;
        YAML::Node root;
    };

    // The node at key in each file that has it, user's file first.
    std::vector<Value> lookup(std::string_view key) const;

    std::vector<File> files_; // site's first
};

Origin origin_of(const std::string& file, const YAML::Node& node);

// Throws ch::Error "can't read config FILE:LINE:COL: why".
[[noreturn]] void fail(const Origin& at, std::string_view why);

// Expands a leading "~" and "$USER", "${USER}", "$HOME", "${HOME}"
// anywhere; other "$" are kept as they are. Site files use this for
// per-user paths such as "/local/$USER.ch".
std::string expand_path(std::string_view path);

} // namespace ch::config

// metadata.cc: see metadata.hh.
#include "image/metadata.hh"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "util/error.hh"
#include "util/strings.hh"

namespace ch::image {

namespace {

using json = nlohmann::json;

[[noreturn]] void bad(std::string_view field, std::string_view why) {
    fail("image config: ", field, ": ", why);
}

std::vector<std::string> strings(const json& j, std::string_view field) {
    std::vector<std::string> out;
    if (j.is_null())
        return out;
    if (j.is_string()) { // Docker accepts a plain string for Cmd and Entrypoint
        out.push_back(j.get<std::string>());
        return out;
    }
    if (!j.is_array())
        bad(field, "not a list of strings");
    for (const auto& x : j) {
        if (!x.is_string())
            bad(field, "not a list of strings");
        out.push_back(x.get<std::string>());
    }
    return out;
}

std::string string_or_empty(const json& obj, const char* key, std::string_view field) {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return {};
    if (!it->is_string())
        bad(field, "not a string");
    return it->get<std::string>();
}

std::string env_name(std::string_view kv) {
    return std::string(kv.substr(0, kv.find('=')));
}

} // namespace

Metadata metadata_from_config(std::string_view config_json) {
    if (config_json.size() > max_config_bytes)
        fail("image config: larger than ", max_config_bytes, " bytes");
    json j;
    try {
        j = json::parse(config_json);
    } catch (const json::exception& e) {
        fail("image config: not JSON: ", e.what());
    }
    if (!j.is_object())
        bad("(top)", "not an object");
    Metadata m;
    m.arch = string_or_empty(j, "architecture", "architecture");
    if (const std::string v = string_or_empty(j, "variant", "variant"); !v.empty())
        m.arch += "/" + v;
    if (const auto h = j.find("history"); h != j.end() && !h->is_null()) {
        if (!h->is_array())
            bad("history", "not a list");
        m.history_len = h->size();
    }
    const auto c = j.find("config");
    if (c == j.end() || c->is_null())
        return m;
    if (!c->is_object())
        bad("config", "not an object");
    const json& cfg = *c;
    if (const auto it = cfg.find("Env"); it != cfg.end())
        m.env = strings(*it, "config.Env");
    m.cwd = string_or_empty(cfg, "WorkingDir", "config.WorkingDir");
    if (const auto it = cfg.find("Entrypoint"); it != cfg.end())
        m.entrypoint = strings(*it, "config.Entrypoint");
    if (const auto it = cfg.find("Cmd"); it != cfg.end())
        m.cmd = strings(*it, "config.Cmd");
    if (const auto it = cfg.find("Shell"); it != cfg.end())
        m.shell = join(strings(*it, "config.Shell"), " ");
    if (const auto it = cfg.find("Labels"); it != cfg.end() && !it->is_null()) {
        if (!it->is_object())
            bad("config.Labels", "not an object");
        for (const auto& [k, v] : it->items()) {
            if (!v.is_string())
                bad(cat("config.Labels.", printable(k)), "not a string");
            m.labels[k] = v.get<std::string>();
        }
    }
    if (const auto it = cfg.find("Volumes"); it != cfg.end() && !it->is_null()) {
        if (!it->is_object())
            bad("config.Volumes", "not an object");
        for (const auto& kv : it->items())
            m.volumes.push_back(kv.key());
    }
    return m;
}

std::string metadata_json(const Metadata& m) {
    json j = json::object();
    j["ref"] = m.ref;
    j["arch"] = m.arch;
    j["env"] = m.env;
    j["cwd"] = m.cwd;
    j["entrypoint"] = m.entrypoint;
    j["cmd"] = m.cmd;
    j["labels"] = m.labels;
    j["volumes"] = m.volumes;
    j["shell"] = m.shell;
    j["history_length"] = m.history_len;
    j["arch_requested"] = m.arch_requested;
    j["digests"] = {{"top", m.top_digest},
                    {"manifest", m.manifest_digest},
                    {"config", m.config_digest},
                    {"layers", m.layer_digests}};
    // Names and values come from the image: replace invalid UTF-8 rather
    // than fail on it.
    return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

Metadata parse_metadata_json(std::string_view text, std::string_view what) {
    try {
        const json j = json::parse(text);
        Metadata m;
        m.ref = j.value("ref", "");
        m.arch = j.value("arch", "");
        m.env = j.value("env", std::vector<std::string>{});
        m.cwd = j.value("cwd", "");
        m.entrypoint = j.value("entrypoint", std::vector<std::string>{});
        m.cmd = j.value("cmd", std::vector<std::string>{});
        m.labels = j.value("labels", std::map<std::string, std::string>{});
        m.volumes = j.value("volumes", std::vector<std::string>{});
        m.shell = j.value("shell", "");
        m.history_len = j.value("history_length", std::uint64_t{0});
        m.arch_requested = j.value("arch_requested", "");
        if (const auto d = j.find("digests"); d != j.end() && d->is_object()) {
            m.top_digest = d->value("top", "");
            m.manifest_digest = d->value("manifest", "");
            m.config_digest = d->value("config", "");
            m.layer_digests = d->value("layers", std::vector<std::string>{});
        }
        return m;
    } catch (const json::exception& e) {
        fail("can't read ", what, ": ", e.what());
    }
}

std::string environment_text(const std::vector<std::string>& env,
                             std::vector<std::string>* dropped) {
    std::vector<std::string> keep;
    for (const auto& kv : env) {
        if (kv.find('=') == std::string::npos || kv.find('\n') != std::string::npos ||
            kv.front() == '=') {
            if (dropped != nullptr)
                dropped->push_back(kv);
            continue;
        }
        keep.push_back(kv);
    }
    // By name; a name given twice keeps its last value, as in the config.
    std::stable_sort(keep.begin(), keep.end(), [](const std::string& a, const std::string& b) {
        return env_name(a) < env_name(b);
    });
    std::string out;
    for (std::size_t i = 0; i < keep.size(); i++) {
        if (i + 1 < keep.size() && env_name(keep[i]) == env_name(keep[i + 1]))
            continue;
        out += keep[i];
        out += '\n';
    }
    return out;
}

} // namespace ch::image

// ch-image: pull images from OCI registries into storage or straight to a
// file, and look after the storage (list, delete, inspect, gestalt, reset).
// Parse, call lib/, report; the pull's steps are in pull.cc.
#include <algorithm>
#include <clocale>
#include <cstdlib>
#include <iostream>

#include <fcntl.h>
#include <unistd.h>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "cli.hh"
#include "config.h"
#include "image/metadata.hh"
#include "image/squash.hh"
#include "pull.hh"
#include "registry/manifest.hh"
#include "storage/layout.hh"
#include "storage/lock.hh"
#include "storage/publish.hh"
#include "util/config.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"
#include "util/strings.hh"
#include "util/tree.hh"

using namespace ch;
using ch::cli::Arg;

namespace {

// Accepted before the command and after it, as Charliecloud does.
const std::vector<cli::Option> common_options = {
    {"arch", 'a', Arg::required, false, "ARCH",
     "architecture to pull (default: the host's, e.g. amd64, arm64/v8)"},
    {"auth", 0, Arg::none, false, "",
     "authenticate with the registry (credentials from $CH_IMAGE_USERNAME and "
     "$CH_IMAGE_PASSWORD, or registry.auth in the configuration)"},
    {"help", 'h', Arg::none, false, "", "give this help list"},
    {"quiet", 'q', Arg::none, true, "", "print less output (can be repeated)"},
    {"storage", 's', Arg::required, false, "DIR",
     "storage directory (default: $CH_IMAGE_STORAGE, the configuration's storage, or "
     "/var/tmp/$USER.ch)"},
    {"tls-no-verify", 0, Arg::none, false, "", "don't verify the registry's TLS certificate"},
    {"verbose", 'v', Arg::none, true, "", "be more verbose (can be repeated)"},
    {"version", 0, Arg::none, false, "", "print version and exit"},
};

struct Command {
    std::string name;
    std::string synopsis;
    std::string description;
    std::vector<cli::Option> options; // besides the common ones
    std::size_t min_args, max_args;
};

const std::vector<Command> commands = {
    {"pull",
     "[OPTION...] REF [DEST_NAME]",
     "Pull the image REF ([HOST[:PORT]/]PATH[:TAG|@sha256:DIGEST]) from its registry into storage "
     "as DEST_NAME (default: REF as given), or with --output straight to a tarball or SquashFS "
     "file. An image already in storage is checked with one HEAD request and not fetched again "
     "if unchanged.",
     {
         {"format", 0, Arg::required, false, "FMT",
          "format of --output: tar, tar.gz, tar.zst, tar.xz or squash (default: from FILE's "
          "name)"},
         {"insecure", 0, Arg::required, true, "HOST[:PORT]",
          "talk plain HTTP to this registry (can be repeated; also registry.insecure)"},
         {"output", 'o', Arg::required, false, "FILE",
          "write the image to FILE (*.tar, *.tar.gz, *.tgz, *.tar.zst, *.tar.xz, *.sqfs, "
          "*.squash, *.squashfs) in one pass, not into storage"},
         {"parallel", 0, Arg::required, false, "N",
          "transfer up to N layers at once (default 4, or registry.parallel)"},
     },
     1,
     2},
    {"list",
     "[OPTION...]",
     "List the images in storage, one name a line.",
     {{"json", 0, Arg::none, false, "", "print a JSON array of the images and their metadata"}},
     0,
     0},
    {"delete", "[OPTION...] NAME", "Delete the image NAME from storage.", {}, 1, 1},
    {"inspect",
     "[OPTION...] NAME",
     "Print the metadata of the image NAME (its /ch/metadata.json) as JSON.",
     {},
     1,
     1},
    {"gestalt",
     "[OPTION...] [storage-path]",
     "Say what this build supports: storage path, layer and SquashFS compressors, TLS library. "
     "With storage-path, print only the storage directory.",
     {},
     0,
     1},
    {"reset",
     "[OPTION...]",
     "Empty the storage directory (images, download cache), after checking that it is ch-image "
     "storage and the user's own.",
     {},
     0,
     0},
};

cli::Spec command_spec(const Command& c) {
    cli::Spec s{cat("ch-image ", c.name), c.synopsis, c.description, common_options, false};
    s.options.insert(s.options.end(), c.options.begin(), c.options.end());
    std::sort(s.options.begin(), s.options.end(),
              [](const cli::Option& a, const cli::Option& b) { return a.long_name < b.long_name; });
    return s;
}

cli::Spec top_spec() {
    std::string desc = "Pull images from OCI registries and manage the image storage.\n\nCommands:";
    for (const auto& c : commands)
        desc += cat("\n  ", c.name, std::string(10 - c.name.size(), ' '), c.synopsis);
    desc += "\nSee 'ch-image COMMAND --help' for each command's options.";
    return {"ch-image", "[OPTION...] COMMAND [ARG...]", desc, common_options, false};
}

const Command* find_command(std::string_view name) {
    for (const auto& c : commands)
        if (c.name == name)
            return &c;
    return nullptr;
}

// Index of the command in argv: the first argument that is neither an option
// nor the value of a common option that takes one. argc if none.
int command_index(int argc, char** argv) {
    for (int i = 1; i < argc; i++) {
        const std::string_view a = argv[i];
        if (a == "--")
            return argc;
        if (a == "-s" || a == "--storage" || a == "-a" || a == "--arch") {
            i++;
            continue;
        }
        if (!a.starts_with("-") || a == "-")
            return i;
    }
    return argc;
}

// The options before and after the command, as one.
cli::Parsed merge(cli::Parsed a, const cli::Parsed& b) {
    for (const auto& o : b.in_order)
        a.in_order.push_back(o);
    for (const auto& [k, v] : b.values)
        a.values[k].insert(a.values[k].end(), v.begin(), v.end());
    for (const auto& [k, n] : b.counts)
        a.counts[k] += n;
    a.positional = b.positional;
    return a;
}

// -s, else $CH_IMAGE_STORAGE, else the configuration's storage, else the
// default (COMPAT.md; ARCHITECTURE.md's precedence).
storage::StorageDir storage_for(const cli::Parsed& p, const config::Config& cfg) {
    if (const auto s = p.value("storage"))
        return storage::storage_dir(fs::path(*s));
    const char* env = std::getenv("CH_IMAGE_STORAGE");
    if ((env == nullptr || *env == '\0'))
        if (const auto s = cfg.string("storage")) {
            const std::string path = config::expand_path(s->value);
            if (path.empty() || path[0] != '/')
                config::fail(s->origin, cat("storage must be an absolute path: ", path));
            auto d = storage::storage_dir(fs::path(path));
            d.source = cat("configuration ", s->origin.str());
            return d;
        }
    return storage::storage_dir(std::nullopt);
}

storage::StorageDir storage_logged(const cli::Parsed& p, const config::Config& cfg) {
    auto d = storage_for(p, cfg);
    log::verbose("storage: ", d.path.string(), " (from ", d.source, ")");
    return d;
}

// Whether storage exists (checked if so).
bool storage_exists(const fs::path& storage) {
    return storage::check_trusted(storage, ::geteuid(), "storage directory");
}

std::vector<std::string> image_names(const fs::path& storage) {
    std::vector<std::string> names;
    if (!storage_exists(storage))
        return names;
    const fs::path img = storage::images_dir(storage);
    if (!storage::check_trusted(img, ::geteuid(), "storage's img/"))
        return names;
    const Fd dir = open_at(AT_FDCWD, img, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    for (const auto& n : list_dir(dir.get(), img.string()))
        if (!n.starts_with("."))
            names.push_back(storage::dirname_to_ref(n));
    std::sort(names.begin(), names.end());
    return names;
}

std::optional<image::Metadata> read_metadata(const fs::path& storage, const std::string& name) {
    const fs::path dir = storage::image_dir(storage, name);
    const Fd root = try_open_at(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!root)
        return std::nullopt;
    // Inside the image, so through its root: ch/ may be a symlink.
    const Fd f = try_open_at(root.get(), "ch/metadata.json", O_RDONLY | O_NOFOLLOW);
    if (!f)
        return std::nullopt;
    return image::parse_metadata_json(read_all(f.get(), "metadata.json", image::max_config_bytes),
                                      cat(name, ": ch/metadata.json"));
}

int cmd_list(const cli::Parsed& p, const config::Config& cfg) {
    const auto st = storage_logged(p, cfg);
    const auto names = image_names(st.path);
    if (!p.has("json")) {
        for (const auto& n : names)
            std::cout << n << "\n";
        return 0;
    }
    nlohmann::json out = nlohmann::json::array();
    for (const auto& n : names) {
        nlohmann::json j = {{"name", n}};
        try {
            if (const auto m = read_metadata(st.path, n)) {
                j["ref"] = m->ref;
                j["arch"] = m->arch;
                j["manifest_digest"] = m->manifest_digest;
            }
        } catch (const Error& e) {
            log::warning(e.what());
        }
        out.push_back(j);
    }
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
}

int cmd_inspect(const cli::Parsed& p, const config::Config& cfg) {
    const auto st = storage_logged(p, cfg);
    const std::string& name = p.positional[0];
    if (!storage_exists(st.path) || !storage::find_image(st.path, name))
        fail("can't inspect ", printable(name), ": no such image in ", st.path.string());
    const auto m = read_metadata(st.path, name);
    if (!m)
        fail("can't inspect ", printable(name),
             ": it has no ch/metadata.json (not pulled by ch-image?)");
    std::cout << image::metadata_json(*m);
    return 0;
}

int cmd_delete(const cli::Parsed& p, const config::Config& cfg) {
    const auto st = storage_logged(p, cfg);
    const std::string& name = p.positional[0];
    if (!storage_exists(st.path) || !storage::find_image(st.path, name))
        fail("can't delete ", printable(name), ": no such image in ", st.path.string());
    storage::StorageLock lock(st.path, storage::LockMode::exclusive);
    const fs::path img = storage::images_dir(st.path);
    const std::string dirname = storage::image_dirname(name);
    // Out of sight first, in one rename: a kill during the removal leaves
    // staging debris (swept by the next writer), never half an image.
    static unsigned serial = 0;
    const std::string gone = storage::staging_name(dirname, ::getpid(), serial++);
    if (::renameat(AT_FDCWD, (img / dirname).c_str(), AT_FDCWD, (img / gone).c_str()) != 0)
        throw_errno("can't delete ", printable(name));
    remove_tree(img / gone);
    log::info("deleted ", printable(name));
    return 0;
}

std::string tls_library() {
    const curl_version_info_data* v = curl_version_info(CURLVERSION_NOW);
    return v->ssl_version != nullptr ? v->ssl_version : "none";
}

int cmd_gestalt(const cli::Parsed& p, const config::Config& cfg) {
    const auto st = storage_for(p, cfg);
    if (!p.positional.empty()) {
        if (p.positional[0] != "storage-path")
            throw UsageError(cat("gestalt: unknown question '", printable(p.positional[0]),
                                 "' (known: storage-path)"));
        std::cout << st.path.string() << "\n";
        return 0;
    }
    const curl_version_info_data* v = curl_version_info(CURLVERSION_NOW);
    std::string arch;
    try {
        arch = registry::host_arch();
    } catch (const Error& e) {
        arch = cat("unknown (", e.what(), ")");
    }
    const auto files = cfg.files();
    std::cout << "version: " << CH_VERSION << "\n"
              << "storage-path: " << st.path.string() << " (from " << st.source << ")\n"
              << "host-arch: " << arch << "\n"
              << "layer-compression: gzip, zstd, xz, bzip2, none (detected by content)\n"
              << "output-formats: tar, tar.gz, tar.zst, tar.xz, squash\n"
              << "squash-compressors: " << join(image::squash_compressors(), ", ") << "\n"
              << "tls-library: " << tls_library() << "\n"
              << "curl: " << v->version << "\n"
              << "http2: " << ((v->features & CURL_VERSION_HTTP2) != 0 ? "yes" : "no") << "\n"
              << "config-files: " << (files.empty() ? "none" : join(files, ", ")) << "\n";
    return 0;
}

// What ch-image (or Charliecloud) keeps in storage; anything else means the
// directory is not storage, and reset refuses to empty it.
bool storage_entry(std::string_view n) {
    for (const char* k :
         {"img", "dlcache", "ulcache", "mnt", "lock", "version", "bucache", "bularge", "imgtmp"})
        if (n == k)
            return true;
    return false;
}

int cmd_reset(const cli::Parsed& p, const config::Config& cfg) {
    const auto st = storage_logged(p, cfg);
    if (!storage_exists(st.path)) {
        log::info("nothing to reset: ", st.path.string(), " does not exist");
        return 0;
    }
    const Fd dir = open_at(AT_FDCWD, st.path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    const auto entries = list_dir(dir.get(), st.path.string());
    for (const auto& n : entries)
        if (!storage_entry(n))
            fail("can't reset ", st.path.string(), ": it doesn't look like ch-image storage (",
                 quote_name(n), " is not something ch-image keeps there)");
    storage::StorageLock lock(st.path, storage::LockMode::exclusive);
    for (const auto& n : entries)
        if (n != "lock") // held: removing it would let another writer in
            remove_tree_at(dir.get(), n);
    log::info("emptied ", st.path.string());
    return 0;
}

int run_command(const Command& c, const cli::Parsed& p) {
    if (p.positional.size() < c.min_args || p.positional.size() > c.max_args)
        throw UsageError(cat(c.name, ": expected ", c.synopsis.substr(c.synopsis.find(']') + 2)));
    const config::Config cfg = config::Config::load();
    for (const auto& f : cfg.files())
        log::verbose("configuration: ", f);
    if (c.name == "pull") {
        const auto st = storage_logged(p, cfg);
        std::setlocale(LC_CTYPE, "C.UTF-8"); // as ch-convert: pax names stay UTF-8
        return pull::pull(p, cfg, st);
    }
    if (c.name == "list")
        return cmd_list(p, cfg);
    if (c.name == "delete")
        return cmd_delete(p, cfg);
    if (c.name == "inspect")
        return cmd_inspect(p, cfg);
    if (c.name == "gestalt")
        return cmd_gestalt(p, cfg);
    return cmd_reset(p, cfg);
}

} // namespace

int main(int argc, char** argv) {
    return cli::guarded_main("ch-image", [&]() -> int {
        const int ci = command_index(argc, argv);
        const cli::Spec top = top_spec();
        cli::Parsed p = cli::parse(top, ci, argv);
        const Command* c = nullptr;
        cli::Spec spec = top;
        if (ci < argc) {
            c = find_command(argv[ci]);
            if (c == nullptr)
                throw UsageError(cat("unknown command '", printable(argv[ci]), "'"));
            spec = command_spec(*c);
            p = merge(std::move(p), cli::parse(spec, argc - ci, argv + ci));
        }
        if (cli::answered_common("ch-image", spec, p))
            return 0;
        if (c == nullptr)
            throw UsageError("no command given");
        return run_command(*c, p);
    });
}

// pull.cc: see pull.hh.
#include "pull.hh"

#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <set>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include "image/convert.hh"
#include "image/formats.hh"
#include "image/metadata.hh"
#include "image/squash.hh"
#include "image/unpack_image.hh"
#include "registry/client.hh"
#include "storage/blob_cache.hh"
#include "storage/lock.hh"
#include "util/config.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"
#include "util/progress.hh"
#include "util/strings.hh"

namespace ch::pull {

namespace {

// Where the image goes.
struct Output {
    bool to_file = false;
    fs::path file;                                  // --output
    image::Format format = image::Format::ch_image; // tar or squash for a file
    image::TarCompression comp = image::TarCompression::none;
    std::string name; // storage name otherwise
};

Output output_for(const cli::Parsed& p) {
    Output o;
    const std::string& ref = p.positional[0];
    const auto file = p.value("output");
    if (!file) {
        if (p.has("format"))
            throw UsageError("--format is for --output");
        o.name = p.positional.size() > 1 ? p.positional[1] : ref;
        if (!storage::is_image_name(storage::dirname_to_ref(o.name)))
            throw UsageError(cat("can't store the image as '", printable(o.name),
                                 "': not an image name (give DEST_NAME)"));
        return o;
    }
    if (p.positional.size() > 1)
        throw UsageError("give DEST_NAME or --output, not both");
    o.to_file = true;
    o.file = *file;
    if (const auto f = p.value("format")) {
        if (*f == "squash") {
            o.format = image::Format::squash;
        } else if (const auto pf = image::parse_out_format(*f);
                   pf && pf->format == image::Format::tar) {
            o.format = image::Format::tar;
            o.comp = pf->tar_comp.value_or(image::TarCompression::none);
        } else {
            throw UsageError(cat("--format: unknown format '", printable(*f),
                                 "' (known: tar, tar.gz, tar.zst, tar.xz, squash)"));
        }
        return o;
    }
    o.format = image::infer_output_format(o.file.string());
    if (o.format == image::Format::tar) {
        const auto c = image::tar_compression_for(o.file.filename().string());
        if (!c)
            throw UsageError(cat("--output ", o.file.string(), ": can't tell the compression (",
                                 image::tar_output_names(), "), or give --format"));
        o.comp = *c;
    } else if (o.format != image::Format::squash) {
        throw UsageError(cat("--output ", o.file.string(),
                             ": can't tell the format from the name (*.tar, *.tar.gz, *.tgz, "
                             "*.tar.zst, *.tar.xz, *.sqfs, *.squash, *.squashfs), or give "
                             "--format"));
    }
    return o;
}

// Command line over CH_* over configuration (Options::from has done the last
// two for registry.* and the credentials).
registry::Options options_for(const cli::Parsed& p, const config::Config& cfg) {
    registry::Options o = registry::Options::from(cfg);
    if (const auto a = p.value("arch")) {
        o.arch = *a;
        log::verbose("architecture: ", *a, " (from --arch)");
    }
    if (p.has("tls-no-verify")) {
        o.tls_verify = false;
        log::verbose("TLS verification: off (from --tls-no-verify)");
    }
    for (const auto& h :
         p.values.count("insecure") ? p.values.at("insecure") : std::vector<std::string>{}) {
        o.insecure.push_back(h);
        log::verbose("insecure registry: ", h, " (from --insecure)");
    }
    if (const auto n = p.value("parallel")) {
        unsigned long long v = 0;
        if (!parse_uint(*n, 64, v) || v == 0)
            throw UsageError(cat("--parallel: '", printable(*n), "' is not a number from 1 to 64"));
        o.parallel = static_cast<int>(v);
        log::verbose("parallel transfers: ", v, " (from --parallel)");
    }
    if (p.has("auth") && !o.credentials && o.host_credentials.empty())
        throw UsageError("--auth: no credentials: set $CH_IMAGE_USERNAME and $CH_IMAGE_PASSWORD, "
                         "or registry.auth in the configuration");
    return o;
}

// Layers as they arrive: the client's callbacks draw the transfer bars and
// say which blobs are complete, so that unpacking can start on the first
// layers while the later ones are still being fetched.
class Bars final : public registry::Progress {
public:
    explicit Bars(TransferMeter& m)
        : m_(m) {}

    // Until the blob is in the cache, or the fetch has ended (rethrowing its
    // error).
    void wait_for(const std::string& digest) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return done_.count(digest) > 0 || ended_; });
        if (done_.count(digest) > 0)
            return;
        if (error_)
            std::rethrow_exception(error_);
        fail("internal error: layer ", digest, " was not fetched");
    }

    void end(std::exception_ptr error) {
        const std::lock_guard<std::mutex> hold(mu_);
        ended_ = true;
        error_ = std::move(error);
        cv_.notify_all();
    }

    void begin(const registry::Blob& b, std::uint64_t already) override {
        m_.begin(image::short_digest(b.digest), already);
    }

    void advance(const registry::Blob& b, std::uint64_t n) override {
        m_.advance(image::short_digest(b.digest), n);
    }

    void done(const registry::Blob& b) override {
        m_.done(image::short_digest(b.digest));
        const std::lock_guard<std::mutex> hold(mu_);
        done_.insert(b.digest);
        cv_.notify_all();
    }

    void retry(const registry::Blob& b, std::string_view why) override {
        m_.retry(image::short_digest(b.digest), why);
    }

private:
    TransferMeter& m_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::set<std::string> done_;
    bool ended_ = false;
    std::exception_ptr error_;
};

// client.fetch on its own thread (the Client is used by nothing else
// meanwhile). Destroying it waits for the fetch to end: the layers still
// coming go into the cache for next time.
class Fetch {
public:
    Fetch(registry::Client& client, const registry::Reference& ref,
          const std::vector<registry::Blob>& layers, storage::BlobCache& cache, Bars& bars)
        : bars_(bars)
        , thread_([&client, &ref, &layers, &cache, &bars] {
            std::exception_ptr error;
            try {
                client.fetch(ref, layers, cache, bars);
            } catch (...) {
                error = std::current_exception();
            }
            bars.end(error);
        }) {}

    Fetch(const Fetch&) = delete;
    Fetch& operator=(const Fetch&) = delete;

    ~Fetch() {
        if (thread_.joinable())
            thread_.join();
    }

    // Wait for the end; rethrow the fetch's error.
    void finish(const std::vector<registry::Blob>& layers) {
        thread_.join();
        for (const auto& l : layers)
            bars_.wait_for(l.digest);
    }

private:
    Bars& bars_;
    std::thread thread_;
};

// The storage's own files besides img/ and dlcache/ (Charliecloud's layout).
void prepare_storage(const fs::path& storage) {
    storage::prepare_images_dir(storage);
    const Fd dir = open_at(AT_FDCWD, storage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (::mkdirat(dir.get(), "ulcache", 0700) != 0 && errno != EEXIST)
        throw_errno("can't create ", (storage / "ulcache").string());
    const Fd v = try_open_at(dir.get(), "version", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    if (v)
        write_all(v.get(), "7\n", (storage / "version").string());
}

std::optional<image::Metadata> stored_metadata(const fs::path& storage, const std::string& name) {
    const auto dir = storage::find_image(storage, storage::dirname_to_ref(name));
    if (!dir)
        return std::nullopt;
    const Fd root = try_open_at(AT_FDCWD, *dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    const Fd f = root ? try_open_at(root.get(), "ch/metadata.json", O_RDONLY | O_NOFOLLOW) : Fd();
    if (!f)
        return std::nullopt;
    try {
        return image::parse_metadata_json(
            read_all(f.get(), "metadata.json", image::max_config_bytes), "metadata.json");
    } catch (const Error&) {
        return std::nullopt; // pulled again
    }
}

bool up_to_date(const std::optional<image::Metadata>& m, const std::string& ref,
                const std::string& arch, const std::string& top_digest,
                const std::string& manifest_digest) {
    return m && m->ref == ref && m->arch_requested == arch &&
           ((!top_digest.empty() && m->top_digest == top_digest) ||
            (!manifest_digest.empty() && m->manifest_digest == manifest_digest));
}

} // namespace

int pull(const cli::Parsed& p, const config::Config& cfg, const storage::StorageDir& st) {
    const auto start = std::chrono::steady_clock::now();
    const Output out = output_for(p);
    const registry::Reference ref = registry::Reference::parse(p.positional[0]);
    registry::Options opts = options_for(p, cfg);
    if (opts.arch.empty())
        opts.arch = registry::host_arch();
    const std::string what = printable(ref.str());
    log::verbose("pulling ", what, " for ", opts.arch,
                 out.to_file ? cat(" to ", out.file.string()) : cat(" as ", printable(out.name)));

    if (out.to_file) {
        if (const std::string why = image::why_not_replace(out.file); !why.empty())
            fail("can't replace ", out.file.string(), ": ", why);
    }
    prepare_storage(st.path);
    storage::StorageLock lock(st.path, storage::LockMode::exclusive);
    storage::BlobCache cache(st.path);
    cache.sweep();
    registry::Client client(opts);

    // A cached image: one HEAD, no GET, if the tag still points where it did.
    const auto stored = out.to_file ? std::nullopt : stored_metadata(st.path, out.name);
    if (stored && stored->ref == ref.str() && stored->arch_requested == opts.arch) {
        const auto head = client.head_digest(ref);
        if (head && up_to_date(stored, ref.str(), opts.arch, *head, "")) {
            log::info(printable(out.name), " is up to date (", image::short_digest(*head), ")");
            return 0;
        }
    }

    const registry::Manifest m = client.resolve(ref);
    log::verbose("manifest ", m.digest, " (", m.media_type, ")",
                 m.platform.empty() ? "" : cat(", chosen for ", m.platform, " from an index"));
    if (up_to_date(stored, ref.str(), opts.arch, m.top_digest, m.digest)) {
        log::info(printable(out.name), " is up to date (", image::short_digest(m.digest), ")");
        return 0;
    }
    const std::string config = client.fetch_small(ref, m.config, image::max_config_bytes);
    image::UnpackImageRequest req;
    try {
        req.meta = image::metadata_from_config(config);
    } catch (Error& e) {
        e.add_context(cat("can't pull ", what));
        throw;
    }
    const std::string config_arch = req.meta.arch;
    req.meta.ref = ref.str();
    req.meta.arch_requested = opts.arch;
    req.meta.top_digest = m.top_digest;
    req.meta.manifest_digest = m.digest;
    req.meta.config_digest = m.config.digest;
    std::uint64_t total = 0;
    for (const auto& l : m.layers) {
        if (!registry::is_layer_type(l.media_type))
            fail("can't pull ", what, ": layer ", image::short_digest(l.digest), " has media type ",
                 printable(l.media_type), ", which is not a tar layer");
        req.meta.layer_digests.push_back(l.digest);
        total += l.size;
    }
    if (!config_arch.empty() && config_arch != opts.arch &&
        config_arch.substr(0, config_arch.find('/')) != opts.arch.substr(0, opts.arch.find('/')))
        log::warning(what, " is for ", printable(config_arch), ", not ", opts.arch);
    log::verbose(m.layers.size(), " layers, ", human_bytes(total));

    for (const auto& l : m.layers)
        req.layers.push_back({cache.path(l.digest), l.digest});
    TransferMeter meter("layer");
    for (const auto& l : m.layers)
        meter.add(image::short_digest(l.digest), l.size);
    Bars bars(meter);
    // Until the fetch ends, SIGINT and SIGTERM keep their default action
    // (the end of the process, which leaves nothing visible: pull.hh says why);
    // after it, they cancel the unpacking, which then removes its staging.
    bool fetched = false;
    auto fetch_done = [&] {
        const auto counts = client.request_counts();
        log::verbose("requests: ", counts.count("GET") ? counts.at("GET") : 0, " GET, ",
                     counts.count("HEAD") ? counts.at("HEAD") : 0, " HEAD");
        cli::catch_interrupts();
        fetched = true;
    };
    Fetch fetch(client, ref, m.layers, cache, bars);
    req.wait_for_layer = [&](std::size_t i) {
        bars.wait_for(m.layers[i].digest);
        if (i + 1 == m.layers.size() && !fetched) {
            fetch.finish(m.layers);
            fetch_done();
        }
    };
    std::unique_ptr<image::Sink> sink;
    std::string dest;
    if (out.to_file) {
        dest = out.file.string();
        req.merged = true;
        // Half ch-convert's backlog: the fetch thread, its transfers and
        // the layers' index share the pull's 64 MiB with the writer.
        // Measured on the 410 MB benchmark image: peak 66 MiB with 24 MiB,
        // 54 MiB with 12, in the same time.
        image::SquashOptions sq;
        sq.backlog_bytes = 12u << 20;
        sink = out.format == image::Format::squash ? image::make_squash_sink(out.file, sq)
                                                   : image::make_tar_sink(out.file, out.comp);
    } else {
        dest = cat("storage image ", printable(out.name));
        sink = image::make_storage_sink(st.path, storage::dirname_to_ref(out.name));
    }
    image::UnpackImageStats stats;
    try {
        stats = image::unpack_image(req, *sink, dest, &cli::interrupted);
    } catch (Error& e) {
        if (dynamic_cast<image::Interrupted*>(&e) == nullptr)
            e.add_context(cat("can't pull ", what));
        throw;
    }
    if (!fetched) { // an image without layers
        fetch.finish(m.layers);
        fetch_done();
    }
    image::check_cancel(&cli::interrupted);
    sink->commit();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    log::verbose("unpacked ", stats.pump.entries, " entries, ", human_bytes(stats.pump.bytes), "; ",
                 stats.rules.whiteouts, " removed by whiteouts");
    log::info("pulled ", what, out.to_file ? cat(" to ", dest) : cat(" as ", printable(out.name)),
              " in ", static_cast<int>(took.count() * 10) / 10.0, " s");
    return 0;
}

} // namespace ch::pull

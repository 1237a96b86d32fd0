// convert.cc: see convert.hh. N sources and M sinks meet here, and only
// here; nothing in this file knows how any format is laid out.
#include "image/convert.hh"

#include <chrono>
#include <cstring>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/formats.hh"
#include "image/image.hh"
#include "image/squash.hh"
#include "storage/layout.hh"
#include "storage/publish.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"
#include "util/progress.hh" // human_bytes

namespace ch::image {

namespace {

bool matches_tar_glob(std::string_view name) {
    // Charliecloud's *.tar, *.t?z, *.tar.?, *.tar.??, widened to any
    // *.tar.EXT: anything that looks like a tarball is one, and the tar sink
    // then says which compressions it can write.
    if (name.ends_with(".tar"))
        return true;
    if (name.size() >= 4 && name.substr(name.size() - 4, 2) == ".t" && name.back() == 'z')
        return true;
    const std::size_t dot = name.rfind('.');
    if (dot == std::string_view::npos || dot < 4 || dot + 1 == name.size())
        return false;
    return name.substr(dot - 4, 4) == ".tar" && name.find('/', dot) == std::string_view::npos;
}

std::unique_ptr<Source> open_source(const ConvertPlan& p) {
    switch (p.in_fmt) {
    case Format::dir:
        return make_dir_source(p.in_path, p.xattrs);
    case Format::ch_image:
        return make_storage_source(p.storage, p.in_ref);
    case Format::tar:
        return make_tar_source(p.in_path);
    case Format::squash:
        return make_squash_source(p.in_path);
    }
    fail("internal error: unknown input format");
}

std::unique_ptr<Sink> open_sink(const ConvertPlan& p) {
    switch (p.out_fmt) {
    case Format::dir:
        return make_dir_sink(p.out_path);
    case Format::ch_image:
        return make_storage_sink(p.storage, p.out_ref);
    case Format::tar:
        return make_tar_sink(p.out_path, p.tar_comp);
    case Format::squash:
        return make_squash_sink(p.out_path, p.squash);
    }
    fail("internal error: unknown output format");
}

bool is_inside_or_same(const fs::path& child, const fs::path& parent) {
    auto c = child.begin();
    for (auto q = parent.begin(); q != parent.end(); ++q, ++c)
        if (c == child.end() || *c != *q)
            return false;
    return true;
}

// The staging output must not appear inside a directory being read.
void check_not_inside(const ConvertPlan& p) {
    if (p.in_fmt != Format::dir && p.in_fmt != Format::ch_image)
        return;
    std::error_code ec;
    const fs::path in = fs::canonical(p.in_path, ec);
    if (ec)
        return; // reading it will fail with a better message
    const fs::path out_parent = fs::weakly_canonical(fs::absolute(p.out_path).parent_path(), ec);
    if (!ec && is_inside_or_same(out_parent, in))
        fail("can't write ", p.out_desc, ": it is inside the input ", p.in_desc);
}

// A directory sink holds a descriptor per level of the path it writes, a
// directory source one per level it reads: up to max_depth each. The soft
// limit is often 1024 (for select(2), which nothing here uses); the hard
// limit is what the site allows.
void raise_fd_limit() {
    struct rlimit rl {};

    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0)
        log::debug("can't raise the open-file limit: ", std::strerror(errno));
}

bool is_archive_head(const unsigned char* u, ssize_t n) {
    const bool gz = n >= 2 && u[0] == 0x1f && u[1] == 0x8b;
    const bool zst = n >= 4 && u[0] == 0x28 && u[1] == 0xb5 && u[2] == 0x2f && u[3] == 0xfd;
    const bool xz = n >= 6 && std::memcmp(u,
                                          "\xfd"
                                          "7zXZ",
                                          5) == 0;
    const bool bz = n >= 3 && std::memcmp(u, "BZh", 3) == 0;
    const bool tar = n >= 262 && std::memcmp(u + 257, "ustar", 5) == 0;
    const bool sqfs = n >= 4 && std::memcmp(u, "hsqs", 4) == 0;
    return gz || zst || xz || bz || tar || sqfs;
}

const fs::path& need_storage(const fs::path& storage, const std::string& error) {
    if (storage.empty())
        fail("can't find the storage directory: ", error);
    return storage;
}

} // namespace

const char* format_name(Format f) {
    switch (f) {
    case Format::ch_image:
        return "ch-image";
    case Format::dir:
        return "dir";
    case Format::squash:
        return "squash";
    case Format::tar:
        return "tar";
    }
    return "?";
}

std::optional<Format> parse_format(std::string_view s) {
    for (const Format f : {Format::ch_image, Format::dir, Format::squash, Format::tar})
        if (s == format_name(f))
            return f;
    return std::nullopt;
}

std::optional<OutFormat> parse_out_format(std::string_view s) {
    if (const auto f = parse_format(s))
        return OutFormat{*f, std::nullopt};

    // Bare "tar" stays a format, whose compression the name then chooses.
    static const struct {
        std::string_view name;
        TarCompression comp;
    } tars[] = {{"tar.gz", TarCompression::gzip},
                {"tgz", TarCompression::gzip},
                {"tar.zst", TarCompression::zstd},
                {"tar.xz", TarCompression::xz}};

    for (const auto& t : tars)
        if (s == t.name)
            return OutFormat{Format::tar, t.comp};
    return std::nullopt;
}

Format infer_output_format(std::string_view out) {
    for (const char* ext : {".sqfs", ".squash", ".squashfs", ".squishy"})
        if (out.ends_with(ext))
            return Format::squash;
    if (matches_tar_glob(out))
        return Format::tar;
    if (out.starts_with("/") || out.starts_with("./"))
        return Format::dir;
    return Format::ch_image;
}

Format detect_input_format(std::string_view in, const fs::path& storage,
                           const std::string& storage_error) {
    // A name of an image in storage is that image, as ch-run reads it, even
    // with a file of that name in the working directory: that may be /tmp,
    // where anyone can put one. "./NAME" is the file.
    if (!storage.empty() && storage::find_image(storage, in)) // checks who owns the storage
        return Format::ch_image;
    const std::string path(in);

    struct stat st {};

    if (::stat(path.c_str(), &st) != 0) {
        if (errno != ENOENT || in.starts_with("/") || in.starts_with("./") || in.starts_with("../"))
            throw_errno("can't read ", path);
        // A bad name is an error of its own; a good one was looked up above.
        storage::image_dirname(in);
        need_storage(storage, storage_error);
        fail("can't find ", printable(in),
             ": no such file or directory, and no image of that name "
             "in storage ",
             storage.string());
    }
    if (S_ISDIR(st.st_mode))
        return Format::dir;
    if (!S_ISREG(st.st_mode))
        fail("can't read ", path, ": not a regular file or directory");
    const Fd fd = open_at(AT_FDCWD, path, O_RDONLY);
    return has_squash_magic(fd.get()) ? Format::squash : Format::tar;
}

ConvertPlan plan_convert(const ConvertRequest& req) {
    ConvertPlan p;
    p.storage = req.storage;
    p.xattrs = req.xattrs;
    p.in_fmt =
        req.in_fmt ? *req.in_fmt : detect_input_format(req.in, req.storage, req.storage_error);
    p.out_fmt = req.out_fmt ? *req.out_fmt : infer_output_format(req.out);
    if (p.in_fmt == p.out_fmt)
        throw UsageError(cat("input and output formats are both ", format_name(p.in_fmt),
                             ": nothing to convert (see -i and -o)"));

    if (p.in_fmt == Format::ch_image || p.out_fmt == Format::ch_image)
        need_storage(req.storage, req.storage_error);
    if (p.in_fmt == Format::ch_image) {
        p.in_ref = req.in;
        p.in_path = storage::image_dir(req.storage, req.in);
        p.in_desc = cat("storage image ", printable(req.in));
        if (!storage::find_image(req.storage, req.in))
            fail("can't find image ", printable(req.in), " in storage ", req.storage.string());
    } else {
        p.in_path = req.in;
        p.in_desc = req.in;

        struct stat st {};

        if (::stat(p.in_path.c_str(), &st) != 0)
            throw_errno("can't read ", req.in);
        if (p.in_fmt == Format::dir && !S_ISDIR(st.st_mode))
            fail("can't read ", req.in, ": not a directory");
        if (p.in_fmt != Format::dir && S_ISDIR(st.st_mode))
            fail("can't read ", req.in, ": is a directory, not a ", format_name(p.in_fmt), " file");
    }

    if (p.out_fmt == Format::ch_image) {
        p.out_ref = req.out;
        p.out_path = storage::image_dir(req.storage, req.out);
        p.out_desc = cat("storage image ", printable(req.out));
    } else {
        p.out_path = req.out;
        p.out_desc = req.out;
    }
    if (p.out_fmt == Format::tar) {
        // -o tar.gz etc. decide; then the name; -o tar with a name that
        // doesn't look like a tarball at all (out.img) writes plain tar.
        const std::string name = p.out_path.filename().string();
        const auto by_name = tar_compression_for(name);
        if (req.tar_comp)
            p.tar_comp = *req.tar_comp;
        else if (by_name)
            p.tar_comp = *by_name;
        else if (!req.out_fmt || matches_tar_glob(name))
            throw UsageError(cat("can't choose a tar compression for ", req.out,
                                 ": the name must match one of ", tar_output_names(),
                                 ", or give one with -o (tar.gz, tar.zst, tar.xz)"));
    }
    if (req.squash) {
        if (p.out_fmt != Format::squash)
            throw UsageError(
                cat("--squash-comp and --squash-block-size are for squash output, and ", req.out,
                    " is ", format_name(p.out_fmt)));
        p.squash = *req.squash;
    }

    struct stat st {};

    if (::lstat(p.out_path.c_str(), &st) == 0) {
        if (req.no_clobber)
            fail("can't write ", p.out_desc, ": it exists and --no-clobber was given");
        // Anything named in storage is an image; elsewhere, only what looks
        // like one may be replaced.
        const bool stored_image = p.out_fmt == Format::ch_image && S_ISDIR(st.st_mode);
        if (const std::string why = why_not_replace(p.out_path); !stored_image && !why.empty())
            fail("can't replace ", p.out_desc, ": ", why);
        p.replaces = true;
    } else if (errno != ENOENT) {
        throw_errno("can't write ", p.out_desc);
    }
    check_not_inside(p);
    return p;
}

std::string why_not_replace(const fs::path& dest) {
    struct stat st {};

    if (::lstat(dest.c_str(), &st) != 0)
        return errno == ENOENT ? "" : cat("can't stat it: ", std::strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        std::error_code ec;
        if (fs::is_empty(dest, ec) && !ec)
            return "";
        auto has = [&](const char* d) {
            struct stat ds {};
            return ::lstat((dest / d).c_str(), &ds) == 0 && S_ISDIR(ds.st_mode);
        };
        if ((has("bin") && has("dev") && has("usr")) || (has("etc") && has("ch")))
            return "";
        return "it is a directory that doesn't look like an image";
    }
    if (S_ISREG(st.st_mode)) {
        unsigned char head[512] = {};
        const Fd fd = try_open_at(AT_FDCWD, dest, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
        const ssize_t n = fd ? ::pread(fd.get(), head, sizeof head, 0) : -1;
        if (n == 0 || is_archive_head(head, n))
            return "";
        return "it is a file that is not an image archive";
    }
    return "it is not a regular file or directory";
}

std::string describe(const ConvertPlan& p) {
    std::string s = cat("would convert ", p.in_desc, " (", format_name(p.in_fmt), ") to ",
                        p.out_desc, " (", format_name(p.out_fmt), ")");
    if (p.out_fmt == Format::ch_image)
        s += cat(" at ", p.out_path.string());
    if (p.replaces)
        s += ", replacing what is there";
    return s;
}

PumpStats run_convert(const ConvertPlan& plan, Cancel cancel) {
    const auto start = std::chrono::steady_clock::now();
    log::verbose("input: ", plan.in_desc, " (", format_name(plan.in_fmt), ")");
    log::verbose("output: ", plan.out_desc, " (", format_name(plan.out_fmt), ")",
                 plan.out_fmt == Format::ch_image ? cat(" at ", plan.out_path.string()) : "");
    raise_fd_limit();
    auto src = open_source(plan);
    // Charliecloud's rules for tarballs (COMPAT.md, "Pull and convert" 3):
    // a directory or SquashFS image and its own root, but a tarball may wrap
    // the image in one directory, and may lack what ch-run needs.
    const bool from_tar = plan.in_fmt == Format::tar;
    const bool init = from_tar && plan.out_fmt != Format::tar;
    UnpackOptions opts;
    opts.keep_xattrs = plan.xattrs;
    if (from_tar) {
        TarbombProbe probe;
        probe_tarbomb(*src, probe, cancel);
        if (const auto top = probe.wrapper()) {
            log::verbose("every entry is under ", quote_name(*top),
                         "/: unpacking its contents as the image");
            opts.strip_top = *top;
        }
    }
    auto sink = open_sink(plan);
    UnpackRules rules(opts);
    const PumpStats stats = pump(*src, *sink, rules, plan.out_desc, cancel);
    if (init)
        pump_init(*sink, rules, stats.newest_mtime, plan.out_desc);
    const UnpackStats& u = rules.stats();
    log::verbose("read ", stats.entries, " entries, ", human_bytes(stats.bytes), " of file data");
    if (u.redirected > 0)
        log::verbose(u.redirected,
                     " entries written through symlinked parents, resolved inside the image");
    if (u.setid_stripped > 0)
        log::verbose("removed setuid/setgid bits from ", u.setid_stripped, " entries");
    if (u.whiteout_markers > 0)
        log::verbose("dropped ", u.whiteout_markers, " whiteout markers (", u.whiteouts,
                     " removed entries of earlier layers)");
    if (u.xattrs_dropped > 0)
        log::verbose("dropped ", u.xattrs_dropped, " extended attributes",
                     plan.xattrs ? " outside user.* or in user.overlay.*" : " (--no-xattrs)");
    if (u.init_made > 0)
        log::verbose("created ", u.init_made,
                     " missing entries ch-run needs (mount points, etc/hosts, ...)");
    for (const auto& w : rules.warnings())
        log::warning(w);
    check_cancel(cancel);
    log::verbose("publishing ", plan.out_path.string());
    sink->commit();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    log::verbose("done in ", took.count(), " s");
    return stats;
}

} // namespace ch::image

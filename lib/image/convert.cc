// convert.cc: see convert.hh. N sources and M sinks meet here, and only
// here; nothing in this file knows how any format is laid out.
#include "image/convert.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "image/formats.hh"
#include "image/image.hh"
#include "image/squash.hh"
#include "storage/publish.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"
#include "util/progress.hh"

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

// Thrown when asked to stop; its message needs no context.
class Interrupted : public Error {
public:
    Interrupted()
        : Error("interrupted") {}
};

void check_cancel(const volatile std::sig_atomic_t* cancel) {
    if (cancel != nullptr && *cancel != 0)
        throw Interrupted();
}

// Hands the sink the current entry's data while counting it, and remembers
// whether a failure came from the source, so that messages say which side
// failed.
class CountingSource final : public Source {
public:
    CountingSource(Source& inner, Progress& progress, const ConvertStats& stats,
                   const volatile std::sig_atomic_t* cancel)
        : inner_(inner)
        , progress_(progress)
        , stats_(stats)
        , cancel_(cancel) {}

    bool next(Entry&) override {
        fail("internal error: a sink may only read the current entry's data");
    }

    std::size_t read(void* buf, std::size_t n) override {
        check_cancel(cancel_);
        std::size_t got = 0;
        try {
            got = inner_.read(buf, n);
        } catch (...) {
            failed_ = true;
            throw;
        }
        bytes_ += got;
        progress_.update(stats_.entries, stats_.bytes + bytes_);
        return got;
    }

    void rewind() override { fail("internal error: a sink may not rewind its source"); }
    std::string describe() const override { return inner_.describe(); }

    bool failed() const { return failed_; }
    std::uint64_t take_bytes() { return std::exchange(bytes_, 0); }

private:
    Source& inner_;
    Progress& progress_;
    const ConvertStats& stats_;
    const volatile std::sig_atomic_t* cancel_;
    std::uint64_t bytes_ = 0;
    bool failed_ = false;
};

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
    const std::string path(in);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno != ENOENT || in.starts_with("/") || in.starts_with("./") || in.starts_with("../"))
            throw_errno("can't read ", path);
        struct stat ist {};
        const std::string name = checked_image_dirname(in);
        need_storage(storage, storage_error);
        if (::lstat((storage / "img" / name).c_str(), &ist) == 0 && S_ISDIR(ist.st_mode))
            return Format::ch_image;
        fail("can't find ", printable(in), ": no such file or directory, and no image of that name "
             "in storage ", storage.string());
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
    p.in_fmt = req.in_fmt ? *req.in_fmt : detect_input_format(req.in, req.storage, req.storage_error);
    p.out_fmt = req.out_fmt ? *req.out_fmt : infer_output_format(req.out);
    if (p.in_fmt == p.out_fmt)
        throw UsageError(cat("input and output formats are both ", format_name(p.in_fmt),
                             ": nothing to convert (see -i and -o)"));

    if (p.in_fmt == Format::ch_image || p.out_fmt == Format::ch_image)
        need_storage(req.storage, req.storage_error);
    if (p.in_fmt == Format::ch_image) {
        p.in_ref = req.in;
        p.in_path = req.storage / "img" / checked_image_dirname(req.in);
        p.in_desc = cat("storage image ", printable(req.in));
        struct stat st {};
        if (::lstat(p.in_path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
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
        p.out_path = req.storage / "img" / checked_image_dirname(req.out);
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
            throw UsageError(cat("--squash-comp and --squash-block-size are for squash output, and ",
                                 req.out, " is ", format_name(p.out_fmt)));
        p.squash = *req.squash;
    }

    struct stat st {};
    if (::lstat(p.out_path.c_str(), &st) == 0) {
        if (req.no_clobber)
            fail("can't write ", p.out_desc, ": it exists and --no-clobber was given");
        // Anything named in storage is an image; elsewhere, only what looks
        // like one may be replaced.
        const bool stored_image = p.out_fmt == Format::ch_image && S_ISDIR(st.st_mode);
        if (const std::string why = storage::why_not_replace(p.out_path); !stored_image && !why.empty())
            fail("can't replace ", p.out_desc, ": ", why);
        p.replaces = true;
    } else if (errno != ENOENT) {
        throw_errno("can't write ", p.out_desc);
    }
    check_not_inside(p);
    return p;
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

ConvertStats convert_stream(Source& src, Sink& sink, UnpackRules& rules, const std::string& dest,
                            const volatile std::sig_atomic_t* cancel) {
    ConvertStats stats;
    Progress progress(cat("converting ", src.describe()));
    CountingSource counting(src, progress, stats, cancel);
    std::vector<Entry> batch;
    Entry e;
    while (src.next(e)) {
        check_cancel(cancel);
        stats.entries++;
        batch.clear();
        try {
            rules.apply(std::move(e), batch);
        } catch (Error& err) {
            err.add_context(cat("can't unpack ", src.describe()));
            throw;
        }
        for (const Entry& out : batch) {
            try {
                sink.add(out, counting);
            } catch (const Interrupted&) {
                throw;
            } catch (Error& err) {
                if (!counting.failed())
                    err.add_context(cat("can't write ", dest));
                throw;
            }
        }
        stats.bytes += counting.take_bytes();
        progress.update(stats.entries, stats.bytes);
    }
    progress.clear();
    return stats;
}

ConvertStats run_convert(const ConvertPlan& plan, const volatile std::sig_atomic_t* cancel) {
    const auto start = std::chrono::steady_clock::now();
    log::verbose("input: ", plan.in_desc, " (", format_name(plan.in_fmt), ")");
    log::verbose("output: ", plan.out_desc, " (", format_name(plan.out_fmt), ")",
                 plan.out_fmt == Format::ch_image ? cat(" at ", plan.out_path.string()) : "");
    auto src = open_source(plan);
    auto sink = open_sink(plan);
    UnpackRules rules({.keep_xattrs = plan.xattrs});
    const ConvertStats stats = convert_stream(*src, *sink, rules, plan.out_desc, cancel);
    const UnpackStats& u = rules.stats();
    log::verbose("read ", stats.entries, " entries, ", human_bytes(stats.bytes), " of file data");
    if (u.redirected > 0)
        log::verbose(u.redirected, " entries written through symlinked parents, resolved inside the image");
    if (u.setid_stripped > 0)
        log::verbose("removed setuid/setgid bits from ", u.setid_stripped, " entries");
    if (u.whiteout_markers > 0)
        log::verbose("dropped ", u.whiteout_markers, " whiteout markers (", u.whiteouts,
                     " removed entries of earlier layers)");
    if (u.xattrs_dropped > 0)
        log::verbose("dropped ", u.xattrs_dropped, " extended attributes",
                     plan.xattrs ? " outside user.*" : " (--no-xattrs)");
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

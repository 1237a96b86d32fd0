// pump.cc: see pump.hh.
#include "image/pump.hh"

#include <algorithm>
#include <utility>
#include <vector>

#include "util/progress.hh"
#include "util/strings.hh"

namespace ch::image {

namespace {

// Hands the sink the current entry's data while counting it, and remembers
// whether a failure came from the source, so that messages say which side
// failed.
class CountingSource final : public Source {
public:
    CountingSource(Source& inner, Progress& progress, const PumpStats& stats, Cancel cancel)
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
    const PumpStats& stats_;
    Cancel cancel_;
    std::uint64_t bytes_ = 0;
    bool failed_ = false;
};

// The data of entries made by the rules themselves: there is none.
class NoData final : public Source {
public:
    bool next(Entry&) override { return false; }

    std::size_t read(void*, std::size_t) override { return 0; }

    void rewind() override {}

    std::string describe() const override { return "the unpacking rules"; }
};

} // namespace

void check_cancel(Cancel cancel) {
    if (cancel != nullptr && *cancel != 0)
        throw Interrupted();
}

PumpStats pump(Source& src, Sink& sink, UnpackRules& rules, const std::string& dest,
               Cancel cancel) {
    PumpStats stats;
    Progress progress(cat("converting ", src.describe()));
    CountingSource counting(src, progress, stats, cancel);
    std::vector<Entry> batch;
    Entry e;
    while (src.next(e)) {
        check_cancel(cancel);
        stats.entries++;
        stats.newest_mtime = std::max(stats.newest_mtime, e.mtime);
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

void pump_init(Sink& sink, UnpackRules& rules, std::int64_t mtime, const std::string& dest) {
    std::vector<Entry> made;
    rules.init_image(made, mtime);
    NoData none;
    for (const Entry& e : made) {
        try {
            sink.add(e, none);
        } catch (Error& err) {
            err.add_context(cat("can't write ", dest));
            throw;
        }
    }
}

void probe_tarbomb(Source& src, TarbombProbe& probe, Cancel cancel) {
    Entry e;
    while (src.next(e)) {
        check_cancel(cancel);
        if (!probe.add(e))
            break;
    }
    src.rewind();
}

} // namespace ch::image

// squash_bench.cc: benchmark and debugging aid for the SquashFS sink and
// source (test-only: lib/ has the real directory source). test/bench/
// squashfs.sh uses it to write with the compressors ch-convert can't select.
//
//   squash-bench [-v] [--comp NAME] [--block N] [--threads N] [--verify] DIR OUT.sqfs
//       write DIR as OUT.sqfs through the SquashFS sink; with --verify, read
//       it back through the SquashFS source and compare with DIR
//   squash-bench --read IMG
//       walk IMG through the SquashFS source, reading all data
//
// The directory walker here is minimal: sorted, parents first, hard links by
// (dev, inode), user.* xattrs, no special files.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "image/squash.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

using namespace ch::image;

namespace {

class DirSource : public Source {
public:
    explicit DirSource(std::string root) : root_(std::move(root)) { rewind(); }

    bool next(Entry& e) override {
        fd_.reset();
        while (!pending_.empty()) {
            const std::string rel = std::move(pending_.back());
            pending_.pop_back();
            const std::string abs = rel.empty() ? root_ : root_ + "/" + rel;
            struct stat st {};
            if (::lstat(abs.c_str(), &st) != 0)
                ch::throw_errno("can't stat ", abs);
            e = Entry{};
            e.path = rel;
            e.mode = st.st_mode & 07777;
            e.uid = st.st_uid;
            e.gid = st.st_gid;
            e.mtime = st.st_mtime;
            if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
                const auto key = std::make_pair(st.st_dev, st.st_ino);
                const auto it = links_.find(key);
                if (it != links_.end()) {
                    e.type = EntryType::hardlink;
                    e.link_target = it->second;
                    return true;
                }
                links_.emplace(key, rel);
            }
            read_xattrs(abs, e);
            if (S_ISDIR(st.st_mode)) {
                e.type = EntryType::dir;
                push_children(abs, rel);
            } else if (S_ISREG(st.st_mode)) {
                e.type = EntryType::file;
                e.size = static_cast<std::uint64_t>(st.st_size);
                fd_ = ch::open_at(AT_FDCWD, abs, O_RDONLY | O_NOFOLLOW);
            } else if (S_ISLNK(st.st_mode)) {
                e.type = EntryType::symlink;
                std::string t(static_cast<std::size_t>(st.st_size) + 1, '\0');
                const ssize_t n = ::readlink(abs.c_str(), t.data(), t.size());
                if (n < 0)
                    ch::throw_errno("can't read link ", abs);
                t.resize(static_cast<std::size_t>(n));
                e.link_target = t;
            } else {
                continue; // devices, FIFOs, sockets: skipped
            }
            return true;
        }
        return false;
    }

    std::size_t read(void* buf, std::size_t n) override {
        if (!fd_)
            return 0;
        while (true) {
            const ssize_t r = ::read(fd_.get(), buf, n);
            if (r >= 0)
                return static_cast<std::size_t>(r);
            if (errno != EINTR)
                ch::throw_errno("can't read ", root_);
        }
    }

    void rewind() override {
        pending_.assign(1, "");
        links_.clear();
        fd_.reset();
    }

    std::string describe() const override { return root_; }

private:
    void push_children(const std::string& abs, const std::string& rel) {
        DIR* d = ::opendir(abs.c_str());
        if (d == nullptr)
            ch::throw_errno("can't open directory ", abs);
        std::vector<std::string> names;
        while (const dirent* de = ::readdir(d))
            if (std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0)
                names.emplace_back(de->d_name);
        ::closedir(d);
        // Reverse order onto a stack: popped in name order.
        std::sort(names.rbegin(), names.rend());
        for (auto& n : names)
            pending_.push_back(rel.empty() ? n : rel + "/" + n);
    }

    static void read_xattrs(const std::string& abs, Entry& e) {
        char names[4096];
        const ssize_t len = ::llistxattr(abs.c_str(), names, sizeof names);
        for (ssize_t i = 0; i < len;) {
            const std::string name(names + i);
            i += static_cast<ssize_t>(name.size()) + 1;
            if (name.rfind("user.", 0) != 0)
                continue;
            char v[4096];
            const ssize_t vl = ::lgetxattr(abs.c_str(), name.c_str(), v, sizeof v);
            if (vl >= 0)
                e.xattrs.push_back(Xattr{name, std::string(v, static_cast<std::size_t>(vl))});
        }
    }

    std::string root_;
    std::vector<std::string> pending_;
    std::map<std::pair<dev_t, ino_t>, std::string> links_;
    ch::Fd fd_;
};

std::uint64_t fnv(std::uint64_t h, const char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
    return h;
}

struct Summary {
    std::string type;
    unsigned mode = 0;
    std::int64_t mtime = 0;
    std::uint64_t size = 0;
    std::string target;
    std::uint64_t hash = 14695981039346656037ull;
};

// Every entry of a source with a hash of its logical content (holes as zeros).
std::map<std::string, Summary> summarize(Source& src, std::uint64_t& bytes) {
    std::map<std::string, Summary> m;
    std::vector<char> buf(1 << 20);
    Entry e;
    while (src.next(e)) {
        Summary s;
        s.type = std::to_string(static_cast<int>(e.type));
        s.mode = e.mode;
        s.mtime = e.mtime;
        s.target = e.link_target;
        if (e.type == EntryType::file) {
            s.size = e.size;
            std::vector<Extent> ext = e.sparse ? *e.sparse : std::vector<Extent>{{0, e.size}};
            std::uint64_t pos = 0;
            for (const auto& x : ext) {
                for (; pos < x.offset; ++pos)
                    s.hash = fnv(s.hash, "", 1);
                std::uint64_t left = x.length;
                while (left > 0) {
                    const std::size_t n = src.read(buf.data(), std::min<std::uint64_t>(buf.size(), left));
                    if (n == 0)
                        throw ch::Error("short read of " + e.path);
                    s.hash = fnv(s.hash, buf.data(), n);
                    left -= n;
                    bytes += n;
                }
                pos += x.length;
            }
            for (; pos < e.size; ++pos)
                s.hash = fnv(s.hash, "", 1);
        }
        m[e.path] = s;
    }
    return m;
}

double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int usage() {
    std::fprintf(stderr, "usage: squash-bench [-v] [--comp NAME] [--block N] [--threads N] [--verify] DIR OUT.sqfs\n"
                         "       squash-bench --read IMG\n");
    return 64;
}

} // namespace

int main(int argc, char** argv) {
    try {
        SquashOptions opts;
        bool verify = false;
        std::string read_img;
        std::vector<std::string> args;
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if (a == "--comp" && i + 1 < argc)
                opts.compressor = argv[++i];
            else if (a == "--block" && i + 1 < argc)
                opts.block_size = static_cast<unsigned>(std::stoul(argv[++i]));
            else if (a == "--threads" && i + 1 < argc)
                opts.threads = static_cast<unsigned>(std::stoul(argv[++i]));
            else if (a == "-v")
                ch::log::init("squash-bench", 2);
            else if (a == "--verify")
                verify = true;
            else if (a == "--read" && i + 1 < argc)
                read_img = argv[++i];
            else if (!a.empty() && a[0] == '-')
                return usage();
            else
                args.push_back(a);
        }
        if (!read_img.empty()) {
            const auto t0 = std::chrono::steady_clock::now();
            auto src = make_squash_source(read_img);
            std::uint64_t bytes = 0;
            const auto m = summarize(*src, bytes);
            std::fprintf(stderr, "read %zu entries, %llu bytes in %.2f s\n", m.size(),
                         static_cast<unsigned long long>(bytes), since(t0));
            return 0;
        }
        if (args.size() != 2)
            return usage();
        const auto t0 = std::chrono::steady_clock::now();
        DirSource src(args[0]);
        auto sink = make_squash_sink(args[1], opts);
        std::size_t n = 0;
        Entry e;
        while (src.next(e)) {
            sink->add(e, src);
            ++n;
        }
        sink->commit();
        std::fprintf(stderr, "wrote %zu entries in %.2f s\n", n, since(t0));
        if (verify) {
            const auto t1 = std::chrono::steady_clock::now();
            std::uint64_t b1 = 0, b2 = 0;
            src.rewind();
            const auto want = summarize(src, b1);
            auto img = make_squash_source(args[1]);
            const auto got = summarize(*img, b2);
            std::size_t bad = 0;
            for (const auto& [path, w] : want) {
                const auto it = got.find(path);
                if (it == got.end()) {
                    std::fprintf(stderr, "missing: %s\n", path.c_str());
                    ++bad;
                    continue;
                }
                const Summary& g = it->second;
                // Which of several hard-linked names is the file depends on
                // the walk; compare content only where both are files.
                const bool links = w.type != g.type;
                if ((!links && (w.mode != g.mode || w.mtime != g.mtime || w.size != g.size ||
                                w.hash != g.hash || w.target != g.target))) {
                    std::fprintf(stderr, "differs: %s\n", path.c_str());
                    ++bad;
                }
            }
            if (got.size() != want.size()) {
                std::fprintf(stderr, "%zu entries in the image, %zu in the directory\n", got.size(), want.size());
                ++bad;
            }
            std::fprintf(stderr, "verified %zu entries, %llu bytes: %zu problems (%.2f s)\n", got.size(),
                         static_cast<unsigned long long>(b2), bad, since(t1));
            return bad == 0 ? 0 : 1;
        }
        return 0;
    } catch (const ch::Error& e) {
        std::fprintf(stderr, "squash-bench: %s\n", e.what());
        return static_cast<int>(e.exit_code());
    }
}

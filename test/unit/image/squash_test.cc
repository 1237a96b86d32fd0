// squash_test.cc: the SquashFS sink and source, with real images. Entries go
// in through a small in-memory source, come back through the SquashFS
// source, and are cross-checked with readers that don't share our code:
// unsquashfs (squashfs-tools) and, as root, squashfuse.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "image/squash.hh"
#include "util/error.hh"

namespace fs = std::filesystem;
using ch::image::Entry;
using ch::image::EntryType;
using ch::image::Extent;
using ch::image::SquashOptions;
using ch::image::Xattr;

namespace {

// ---- fixtures --------------------------------------------------------------

struct Item {
    Entry e;
    std::string data; // what Source::read delivers (for sparse files: the extents' bytes)
};

// A source over a vector of entries: what the sink sees from any real source.
class VecSource : public ch::image::Source {
public:
    explicit VecSource(std::vector<Item> items)
        : items_(std::move(items)) {}

    bool next(Entry& e) override {
        if (next_ >= items_.size())
            return false;
        e = items_[next_].e;
        cur_ = &items_[next_].data;
        pos_ = 0;
        ++next_;
        return true;
    }

    std::size_t read(void* buf, std::size_t n) override {
        if (cur_ == nullptr)
            return 0;
        const std::size_t k = std::min(n, cur_->size() - pos_);
        std::memcpy(buf, cur_->data() + pos_, k);
        pos_ += k;
        return k;
    }

    void rewind() override { next_ = 0; }

    std::string describe() const override { return "test entries"; }

private:
    std::vector<Item> items_;
    std::size_t next_ = 0;
    const std::string* cur_ = nullptr;
    std::size_t pos_ = 0;
};

struct TempDir {
    fs::path path;

    TempDir() {
        const char* t = std::getenv("TMPDIR");
        std::string tmpl = std::string(t && *t ? t : "/tmp") + "/ch-squash-test.XXXXXX";
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }

    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }

    fs::path operator/(const std::string& s) const { return path / s; }
};

Entry meta(const std::string& path, EntryType t, mode_t mode, std::int64_t mtime) {
    Entry e;
    e.path = path;
    e.type = t;
    e.mode = mode;
    e.mtime = mtime;
    return e;
}

Item file(const std::string& path, std::string data, mode_t mode = 0644,
          std::int64_t mtime = 1600000000) {
    Item it{meta(path, EntryType::file, mode, mtime), std::move(data)};
    it.e.size = it.data.size();
    return it;
}

Item dir(const std::string& path, mode_t mode = 0755, std::int64_t mtime = 1600000000) {
    return Item{meta(path, EntryType::dir, mode, mtime), {}};
}

Item symlink(const std::string& path, const std::string& target, std::int64_t mtime = 1600000000) {
    Item it{meta(path, EntryType::symlink, 0777, mtime), {}};
    it.e.link_target = target;
    return it;
}

Item hardlink(const std::string& path, const std::string& target) {
    Item it{meta(path, EntryType::hardlink, 0644, 0), {}};
    it.e.link_target = target;
    return it;
}

Item whiteout(const std::string& path) {
    return Item{meta(path, EntryType::whiteout, 0, 0), {}};
}

// A sparse file: logical size, data regions, and the bytes of each region
// made from a seed.
Item sparse(const std::string& path, std::uint64_t size, std::vector<Extent> extents,
            char seed = 'a') {
    Item it{meta(path, EntryType::file, 0640, 1650000000), {}};
    it.e.size = size;
    for (const auto& x : extents)
        for (std::uint64_t i = 0; i < x.length; ++i)
            it.data.push_back(static_cast<char>(seed + (x.offset + i) % 23));
    it.e.sparse = std::move(extents);
    return it;
}

// Compressible but not trivially so: words from a small vocabulary.
std::string text(std::size_t n, unsigned seed) {
    static const char* words[] = {"squash ", "block ", "inode ", "fragment ", "table ", "xattr ",
                                  "mount ",  "image ", "layer ", "\n",        "0123 ",  "tar "};
    std::mt19937 rng(seed);
    std::string s;
    while (s.size() < n)
        s += words[rng() % 12];
    s.resize(n);
    return s;
}

std::string noise(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s)
        c = static_cast<char>(rng());
    return s;
}

void write_image(const fs::path& out, std::vector<Item> items, const SquashOptions& opts = {}) {
    VecSource src(std::move(items));
    auto sink = ch::image::make_squash_sink(out, opts);
    Entry e;
    while (src.next(e))
        sink->add(e, src);
    sink->commit();
}

std::vector<Item> read_image(const fs::path& img) {
    auto src = ch::image::make_squash_source(img);
    std::vector<Item> out;
    Entry e;
    while (src->next(e)) {
        Item it{e, {}};
        char buf[65536];
        while (std::size_t n = src->read(buf, sizeof buf))
            it.data.append(buf, n);
        out.push_back(std::move(it));
    }
    return out;
}

std::map<std::string, Item> by_path(std::vector<Item> items) {
    std::map<std::string, Item> m;
    for (auto& it : items)
        m[it.e.path] = std::move(it);
    return m;
}

// The bytes a reader of the file sees (holes as zeros).
std::string logical(const Item& it) {
    if (!it.e.sparse)
        return it.data;
    std::string s(it.e.size, '\0');
    std::size_t at = 0;
    for (const auto& x : *it.e.sparse) {
        s.replace(x.offset, x.length, it.data.substr(at, x.length));
        at += x.length;
    }
    return s;
}

std::string slurp(const fs::path& p) {
    std::string s;
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return s;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        s.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return s;
}

struct Run {
    int status;
    std::string out;
};

Run run(const std::string& cmd) {
    Run r{-1, {}};
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p))
        r.out.append(buf, n);
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

// Evaluated while doctest registers the test cases: no assertions here.
bool has_program(const char* name) {
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path ? path : "/usr/bin:/bin");
    for (std::string d; std::getline(dirs, d, ':');)
        if (!d.empty() && ::access((d + "/" + name).c_str(), X_OK) == 0)
            return true;
    return false;
}

// unsquashfs -lln: path -> the listing line's fields.
struct Listed {
    std::string perms, owner;
    std::uint64_t size = 0;
    std::string target;
};

std::map<std::string, Listed> unsquashfs_list(const fs::path& img) {
    const Run r = run("unsquashfs -lln " + img.string());
    REQUIRE_MESSAGE(r.status == 0, r.out);
    std::map<std::string, Listed> m;
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        Listed l;
        std::string date, time, path;
        if (!(ls >> l.perms >> l.owner >> l.size >> date >> time))
            continue;
        std::getline(ls >> std::ws, path);
        if (const auto arrow = path.find(" -> "); arrow != std::string::npos) {
            l.target = path.substr(arrow + 4);
            path.resize(arrow);
        }
        const std::string root = "squashfs-root";
        path = path == root ? "" : path.substr(root.size() + 1);
        m[path] = l;
    }
    return m;
}

std::string perm_string(const Entry& e) {
    std::string s = "?rwxrwxrwx";
    s[0] = e.type == EntryType::dir ? 'd' : e.type == EntryType::symlink ? 'l' : '-';
    for (int i = 0; i < 9; ++i)
        if (!(e.mode & (0400 >> i)))
            s[1 + i] = '-';
    if (e.mode & 04000)
        s[3] = (e.mode & 0100) ? 's' : 'S';
    if (e.mode & 02000)
        s[6] = (e.mode & 010) ? 's' : 'S';
    if (e.mode & 01000)
        s[9] = (e.mode & 01) ? 't' : 'T';
    return s;
}

template <typename Fn>
ch::Error expect_error(Fn fn) {
    try {
        fn();
    } catch (const ch::Error& e) {
        return e;
    }
    FAIL("no ch::Error thrown");
    return ch::Error("");
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

constexpr std::size_t B = 128 * 1024;

// Every kind of entry the sink takes, with the metadata that must survive.
std::vector<Item> sample_tree() {
    std::vector<Item> v;
    v.push_back(dir("", 0755, 1500000000));
    v.push_back(dir("etc", 0755, 1500000001));
    v.push_back(file("etc/empty", ""));
    v.push_back(file("etc/one", "x", 0600, 1500000002));
    v.push_back(file("etc/block-1", text(B - 1, 1)));
    v.push_back(file("etc/block", text(B, 2)));
    v.push_back(file("etc/block+1", text(B + 1, 3)));
    v.push_back(file("etc/several", text(3 * B + 17, 4), 0755));
    v.push_back(file("etc/random", noise(2 * B + 5, 5))); // incompressible: stored raw
    v.push_back(file("etc/same-as-block", text(B, 2)));   // deduplicated
    Item owned = file("etc/owned", "mine\n", 04755, 1500000003);
    owned.e.uid = 1000;
    owned.e.gid = 1001;
    v.push_back(owned);
    Item attrs = file("etc/attrs", "with xattrs\n");
    attrs.e.xattrs = {{"user.zeta", "last"}, {"user.alpha", std::string("bin\0ary", 7)}};
    v.push_back(attrs);
    v.push_back(symlink("etc/link", "one"));
    v.push_back(symlink("etc/abs", "/usr/bin/env"));
    v.push_back(hardlink("etc/hard", "etc/several"));
    v.push_back(dir("empty", 0700, 1500000004));
    Item sticky = dir("tmp", 01777, 1500000005);
    sticky.e.xattrs = {{"user.dir", "yes"}};
    v.push_back(sticky);
    // Parents that never got an entry: created as 0755.
    v.push_back(file("usr/lib/deep/file", text(1000, 6)));
    v.push_back(hardlink("usr/lib/also-several", "etc/several"));
    return v;
}

void check_same(const Item& want, const Item& got) {
    INFO("entry '", want.e.path, "'");
    CHECK(got.e.type == want.e.type);
    CHECK(got.e.mode == want.e.mode);
    CHECK(got.e.uid == want.e.uid);
    CHECK(got.e.gid == want.e.gid);
    CHECK(got.e.mtime == want.e.mtime);
    CHECK(got.e.link_target == want.e.link_target);
    if (want.e.type == EntryType::file) {
        CHECK(got.e.size == want.e.size);
        CHECK(logical(got) == logical(want));
    }
    auto sorted = want.e.xattrs;
    std::sort(sorted.begin(), sorted.end(),
              [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
    REQUIRE(got.e.xattrs.size() == sorted.size());
    for (std::size_t i = 0; i < sorted.size(); ++i) {
        CHECK(got.e.xattrs[i].name == sorted[i].name);
        CHECK(got.e.xattrs[i].value == sorted[i].value);
    }
}

} // namespace

TEST_SUITE("image/squash") {

    TEST_CASE("squash: round trip keeps every field and byte") {
        TempDir tmp;
        const fs::path img = tmp / "image.sqfs";
        write_image(img, sample_tree());
        const auto got = read_image(img);

        // Parents before children, siblings by name.
        std::vector<std::string> paths;
        for (const auto& it : got)
            paths.push_back(it.e.path);
        const std::vector<std::string> want_order = {"",
                                                     "empty",
                                                     "etc",
                                                     "etc/abs",
                                                     "etc/attrs",
                                                     "etc/block",
                                                     "etc/block+1",
                                                     "etc/block-1",
                                                     "etc/empty",
                                                     "etc/hard",
                                                     "etc/link",
                                                     "etc/one",
                                                     "etc/owned",
                                                     "etc/random",
                                                     "etc/same-as-block",
                                                     "etc/several",
                                                     "tmp",
                                                     "usr",
                                                     "usr/lib",
                                                     "usr/lib/also-several",
                                                     "usr/lib/deep",
                                                     "usr/lib/deep/file"};
        CHECK(paths == want_order);

        auto m = by_path(got);
        for (const auto& want : sample_tree()) {
            REQUIRE(m.count(want.e.path) == 1);
            const Item& g = m[want.e.path];
            if (want.e.type == EntryType::hardlink || want.e.path == "etc/several")
                continue; // below
            check_same(want, g);
        }
        // Three names for one inode: the first in walk order is the file, the
        // others hard links to it.
        Item several = sample_tree()[7];
        REQUIRE(several.e.path == "etc/several");
        several.e.path = "etc/hard";
        check_same(several, m["etc/hard"]);
        CHECK(m["etc/several"].e.type == EntryType::hardlink);
        CHECK(m["etc/several"].e.link_target == "etc/hard");
        CHECK(m["usr/lib/also-several"].e.type == EntryType::hardlink);
        CHECK(m["usr/lib/also-several"].e.link_target == "etc/hard");
        CHECK(m["usr"].e.mode == 0755);
        CHECK(m["usr/lib/deep"].e.type == EntryType::dir);
    }

    TEST_CASE("squash: unsquashfs reads what the sink wrote" *
              doctest::skip(!has_program("unsquashfs"))) {
        TempDir tmp;
        const fs::path img = tmp / "image.sqfs";
        const auto items = sample_tree();
        write_image(img, items);

        const auto listed = unsquashfs_list(img);
        for (const auto& it : items) {
            if (it.e.type == EntryType::hardlink)
                continue;
            INFO("entry '", it.e.path, "'");
            REQUIRE(listed.count(it.e.path) == 1);
            const Listed& l = listed.at(it.e.path);
            CHECK(l.perms == perm_string(it.e));
            CHECK(l.owner == std::to_string(it.e.uid) + "/" + std::to_string(it.e.gid));
            if (it.e.type == EntryType::file)
                CHECK(l.size == it.e.size);
            if (it.e.type == EntryType::symlink)
                CHECK(l.target == it.e.link_target);
        }
        CHECK(listed.size() == 22);

        const fs::path out = tmp / "x";
        const Run r = run("unsquashfs -n -d " + out.string() + " " + img.string());
        REQUIRE_MESSAGE(r.status == 0, r.out);
        for (const auto& it : items) {
            INFO("entry '", it.e.path, "'");
            const fs::path p = out / it.e.path;

            struct stat st {};

            REQUIRE(::lstat(p.c_str(), &st) == 0);
            if (it.e.type == EntryType::file)
                CHECK(slurp(p) == it.data);
            if (it.e.type == EntryType::file || it.e.type == EntryType::dir)
                CHECK(st.st_mtime == it.e.mtime);
            if (it.e.type == EntryType::symlink)
                CHECK(fs::read_symlink(p).string() == it.e.link_target);
            if (::geteuid() == 0 && it.e.type != EntryType::hardlink) {
                CHECK(st.st_uid == it.e.uid);
                CHECK((st.st_mode & 07777) == it.e.mode);
            }
            for (const auto& x : it.e.xattrs) {
                char v[256];
                const ssize_t n = ::lgetxattr(p.c_str(), x.name.c_str(), v, sizeof v);
                if (n < 0 && errno == ENOTSUP)
                    break;
                CHECK(std::string(v, static_cast<std::size_t>(std::max<ssize_t>(n, 0))) == x.value);
            }
        }

        // Hard links: one inode with three names.
        struct stat a {
        }, b{}, c{};

        REQUIRE(::stat((out / "etc/several").c_str(), &a) == 0);
        REQUIRE(::stat((out / "etc/hard").c_str(), &b) == 0);
        REQUIRE(::stat((out / "usr/lib/also-several").c_str(), &c) == 0);
        CHECK(a.st_ino == b.st_ino);
        CHECK(a.st_ino == c.st_ino);
        CHECK(a.st_nlink == 3);
        CHECK(fs::is_empty(out / "empty"));
    }

    // squashfuse_ll (the squashfuse package) is a reader independent of ours; it
    // reports SquashFS inode numbers, so hard links show as one inode.
    TEST_CASE("squash: squashfuse_ll serves what the sink wrote" *
              doctest::skip(::geteuid() != 0 || !has_program("squashfuse_ll") ||
                            ::access("/dev/fuse", R_OK | W_OK) != 0)) {
        TempDir tmp;
        const fs::path img = tmp / "image.sqfs";
        const auto items = sample_tree();
        write_image(img, items);
        const fs::path mnt = tmp / "mnt";
        fs::create_directory(mnt);
        const Run m = run("squashfuse_ll " + img.string() + " " + mnt.string());
        REQUIRE_MESSAGE(m.status == 0, m.out);

        struct Unmount {
            fs::path p;

            ~Unmount() { run("fusermount3 -u " + p.string() + " || umount -l " + p.string()); }
        } unmount{mnt};

        for (const auto& it : items) {
            INFO("entry '", it.e.path, "'");

            struct stat st {};

            REQUIRE(::lstat((mnt / it.e.path).c_str(), &st) == 0);
            if (it.e.type == EntryType::file) {
                CHECK(slurp(mnt / it.e.path) == it.data);
                CHECK((st.st_mode & 07777) == it.e.mode);
                CHECK(st.st_uid == it.e.uid);
                CHECK(st.st_mtime == it.e.mtime);
            }
        }

        struct stat a {
        }, b{}, d{};

        REQUIRE(::stat((mnt / "etc/several").c_str(), &a) == 0);
        REQUIRE(::stat((mnt / "etc/hard").c_str(), &b) == 0);
        CHECK(a.st_ino == b.st_ino);
        CHECK(a.st_nlink == 3);
        REQUIRE(::stat((mnt / "etc").c_str(), &d) == 0);
        CHECK(d.st_nlink == 2); // no subdirectories
        REQUIRE(::stat(mnt.c_str(), &d) == 0);
        CHECK(d.st_nlink == 6); // root: 2 + empty, etc, tmp, usr
    }

    TEST_CASE("squash: a 5 GiB sparse file is quick to write and small") {
        TempDir tmp;
        const fs::path img = tmp / "sparse.sqfs";
        const std::uint64_t size = 5ull << 30;
        std::vector<Item> items;
        items.push_back(sparse(
            "big", size, {{0, 10}, {1ull << 30, 100000}, {(4ull << 30) + 7, B}, {size - 5, 5}}));
        items.push_back(sparse("holes-only", size, {}));
        const auto t0 = std::chrono::steady_clock::now();
        write_image(img, items);
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        CHECK(secs < 5); // the holes cost nothing but their block list (~160 KiB)
        CHECK(fs::file_size(img) < (1u << 20));

        auto m = by_path(read_image(img));
        for (const auto& want : items) {
            const Item& got = m[want.e.path];
            INFO("entry '", want.e.path, "'");
            CHECK(got.e.size == size);
            REQUIRE(got.e.sparse.has_value());
            // Data regions come back rounded out to whole blocks (SquashFS keeps
            // holes per block); compare the bytes at every region instead.
            for (const auto& x : *want.e.sparse) {
                std::uint64_t at = 0;
                std::string bytes;
                for (const auto& g : *got.e.sparse) {
                    if (x.offset >= g.offset && x.offset + x.length <= g.offset + g.length)
                        bytes = got.data.substr(at + (x.offset - g.offset), x.length);
                    at += g.length;
                }
                CHECK(bytes.size() == x.length);
            }
        }
        CHECK(m["holes-only"].e.sparse->empty());
        if (has_program("unsquashfs")) {
            const auto listed = unsquashfs_list(img);
            CHECK(listed.at("big").size == size);
            CHECK(listed.at("holes-only").size == size);
        }
    }

    TEST_CASE("squash: sparse files keep their holes and data" *
              doctest::skip(!has_program("unsquashfs"))) {
        // 4 KiB blocks, so that small files have many blocks.
        const std::uint64_t b = 4096;
        TempDir tmp;
        const fs::path img = tmp / "sparse.sqfs";
        std::vector<Item> items;
        items.push_back(
            sparse("tail-data", 10 * b + 20, {{100, 50}, {3 * b + 10, b}, {10 * b, 20}}, 'a'));
        items.push_back(sparse("tail-hole", 12 * b + 100, {{b, 2 * b}, {5 * b + 1, 3}}, 'b'));
        items.push_back(sparse("all-hole", 5 * b + 3, {}, 'c'));
        items.push_back(sparse("no-hole", 2 * b + 5, {{0, 2 * b + 5}}, 'd'));
        items.push_back(sparse("aligned", 8 * b, {{2 * b, 2 * b}}, 'e'));
        items.push_back(sparse("last-block-data", 4 * b, {{3 * b, b}}, 'f'));
        // Not declared sparse, but with a zero block: stored as a hole anyway.
        items.push_back(file("zero-block", std::string(b, 'x') + std::string(b, '\0') + "end"));
        SquashOptions opts;
        opts.block_size = b;
        write_image(img, items, opts);

        auto m = by_path(read_image(img));
        const fs::path out = tmp / "x";
        const Run r = run("unsquashfs -n -d " + out.string() + " " + img.string());
        REQUIRE_MESSAGE(r.status == 0, r.out);
        for (const auto& want : items) {
            INFO("entry '", want.e.path, "'");
            const Item& got = m[want.e.path];
            CHECK(got.e.size == want.e.size);
            CHECK(logical(got) == logical(want));
            CHECK(slurp(out / want.e.path) == logical(want));
        }
        CHECK(!m["no-hole"].e.sparse);
        REQUIRE(m["tail-hole"].e.sparse);
        const std::vector<std::pair<std::uint64_t, std::uint64_t>> want_regions = {{b, 2 * b},
                                                                                   {5 * b, b}};
        std::vector<std::pair<std::uint64_t, std::uint64_t>> regions;
        for (const auto& x : *m["tail-hole"].e.sparse)
            regions.emplace_back(x.offset, x.length);
        CHECK(regions == want_regions);
        REQUIRE(m["zero-block"].e.sparse);
        CHECK(m["zero-block"].e.sparse->size() == 2);
    }

    TEST_CASE("squash: names up to 255 bytes; longer ones are refused by name") {
        TempDir tmp;
        const std::string n255(255, 'n');
        const fs::path img = tmp / "names.sqfs";
        write_image(img, {dir(n255), file(n255 + "/" + n255, "long\n")});
        auto m = by_path(read_image(img));
        CHECK(m[n255 + "/" + n255].data == "long\n");
        if (has_program("unsquashfs"))
            CHECK(unsquashfs_list(img).count(n255 + "/" + n255) == 1);

        for (std::size_t len : {256, 300}) {
            const std::string name = "d/" + std::string(len, 'x');
            const ch::Error e =
                expect_error([&] { write_image(tmp / "bad.sqfs", {file(name, "x")}); });
            CHECK(e.exit_code() == ch::Exit::squash);
            CHECK(contains(e.what(), "can't write " + (tmp / "bad.sqfs").string()));
            CHECK(contains(e.what(), "entry 'd/xxxx"));
            CHECK(contains(e.what(), std::to_string(len) + " bytes long"));
            CHECK(!fs::exists(tmp / "bad.sqfs"));
        }
    }

    TEST_CASE("squash: later entries replace earlier ones; whiteouts remove") {
        TempDir tmp;
        const fs::path img = tmp / "layers.sqfs";
        write_image(img, {
                             file("a", "first"),
                             file("a", "second"), // file over file
                             dir("d", 0700, 1),
                             file("d/keep", "kept"),
                             dir("d", 0750, 2), // dir over dir: keeps children
                             dir("f"),
                             file("f/gone", "gone"),
                             file("f", "now a file"), // file over dir: children go
                             file("g", "was a file"),
                             dir("g", 0711, 3), // dir over file
                             dir("w/sub"),
                             file("w/sub/x", "x"),
                             whiteout("w/sub"),       // removes the subtree
                             whiteout("never/there"), // nothing to remove
                             file("orig", "shared data"),
                             hardlink("link", "orig"),
                             file("orig", "replaced"), // the link keeps the old inode
                             file("h1", "h"),
                             hardlink("h2", "h1"),
                             whiteout("h1"), // h2 keeps it, one link left
                         });
        auto m = by_path(read_image(img));
        CHECK(m["a"].data == "second");
        CHECK(m["d"].e.mode == 0750);
        CHECK(m["d"].e.mtime == 2);
        CHECK(m["d/keep"].data == "kept");
        CHECK(m["f"].e.type == EntryType::file);
        CHECK(m["f"].data == "now a file");
        CHECK(m.count("f/gone") == 0);
        CHECK(m["g"].e.type == EntryType::dir);
        CHECK(m["g"].e.mode == 0711);
        CHECK(m.count("w") == 1);
        CHECK(m.count("w/sub") == 0);
        CHECK(m.count("w/sub/x") == 0);
        CHECK(m.count("never") == 0);
        CHECK(m["link"].e.type == EntryType::file);
        CHECK(m["link"].data == "shared data");
        CHECK(m["orig"].data == "replaced");
        CHECK(m["h2"].e.type == EntryType::file);
        CHECK(m["h2"].data == "h");
        CHECK(m.count("h1") == 0);
        if (has_program("unsquashfs")) {
            const fs::path out = tmp / "x";
            REQUIRE(run("unsquashfs -n -d " + out.string() + " " + img.string()).status == 0);

            struct stat st {};

            REQUIRE(::stat((out / "h2").c_str(), &st) == 0);
            CHECK(st.st_nlink == 1);
            REQUIRE(::stat((out / "link").c_str(), &st) == 0);
            CHECK(st.st_nlink == 1);
        }
    }

    TEST_CASE("squash: the same entries give the same bytes, whatever the threads") {
        std::vector<Item> items = sample_tree();
        // Many small blocks (4 KiB) keep several in flight at once, with
        // fragments, duplicates and raw blocks interleaved.
        for (int i = 0; i < 150; ++i)
            items.push_back(file("many/f" + std::to_string(i),
                                 i % 3 ? text(static_cast<std::size_t>(i) * 3001 % 40000, i % 50)
                                       : noise(static_cast<std::size_t>(i) * 997, i)));
        items.push_back(sparse("many/sparse", 40 * 4096 + 3, {{5, 10}, {20 * 4096, 4096 + 7}}));
        TempDir tmp;
        for (const unsigned bs : {4096u, 131072u}) {
            std::string first;
            for (const unsigned threads : {1u, 2u, 4u, 1u}) {
                SquashOptions opts;
                opts.threads = threads;
                opts.block_size = bs;
                const fs::path img = tmp / ("t" + std::to_string(threads) + ".sqfs");
                write_image(img, bs == 4096 ? items : sample_tree(), opts);
                const std::string bytes = slurp(img);
                if (first.empty())
                    first = bytes;
                INFO("block size ", bs, ", threads ", threads);
                CHECK(bytes.size() == first.size());
                CHECK((bytes == first));
                CHECK(bytes.size() % 4096 == 0);
            }
            // The superblock's modification time is 0 (offset 8, 4 bytes).
            CHECK(first.substr(8, 4) == std::string(4, '\0'));
        }
    }

    TEST_CASE("squash: every compressor this libsquashfs has") {
        const auto comps = ch::image::squash_compressors();
        CHECK(std::find(comps.begin(), comps.end(), "gzip") != comps.end());
        TempDir tmp;
        for (const auto& c : comps) {
            INFO("compressor ", c);
            SquashOptions opts;
            opts.compressor = c;
            const fs::path img = tmp / (c + ".sqfs");
            write_image(img, sample_tree(), opts);
            auto m = by_path(read_image(img));
            CHECK((m["etc/hard"].data == text(3 * B + 17, 4)));
            CHECK((m["etc/random"].data == noise(2 * B + 5, 5)));
            if (has_program("unsquashfs")) {
                const Run r = run("unsquashfs -s " + img.string());
                CHECK(r.status == 0);
                CHECK(contains(r.out, "Compression " + c));
                const Run x = run("unsquashfs -n -d " + (tmp / c).string() + " " + img.string());
                CHECK_MESSAGE(x.status == 0, x.out);
                CHECK(slurp(tmp / c / "etc/several") == text(3 * B + 17, 4));
            }
        }
        const ch::Error e = expect_error([&] {
            SquashOptions opts;
            opts.compressor = "brotli";
            write_image(tmp / "x.sqfs", {file("a", "a")}, opts);
        });
        CHECK(contains(e.what(), "unknown compressor 'brotli'"));
        const ch::Error e2 = expect_error([&] {
            SquashOptions opts;
            opts.block_size = 100000;
            write_image(tmp / "x.sqfs", {file("a", "a")}, opts);
        });
        CHECK(contains(e2.what(), "invalid block size 100000"));
        CHECK(!fs::exists(tmp / "x.sqfs"));
    }

    TEST_CASE("squash: refuses what it can't store, and leaves nothing behind") {
        TempDir tmp;
        const fs::path img = tmp / "bad.sqfs";
        Item dev{meta("dev/null", EntryType::chardev, 0666, 0), {}};
        dev.e.dev_major = 1;
        dev.e.dev_minor = 3;
        ch::Error e = expect_error([&] { write_image(img, {dir("dev"), dev}); });
        CHECK(contains(e.what(), "can't write " + img.string() +
                                     ": entry 'dev/null': is a character device"));

        e = expect_error([&] { write_image(img, {hardlink("b", "nowhere")}); });
        CHECK(contains(e.what(), "entry 'b': hard link target 'nowhere' is not in the image"));
        e = expect_error([&] { write_image(img, {dir("d"), hardlink("b", "d")}); });
        CHECK(contains(e.what(), "hard link target 'd' is a directory"));
        e = expect_error([&] { write_image(img, {file("f", "x"), file("f/g", "y")}); });
        CHECK(contains(e.what(), "entry 'f/g': 'f' is not a directory"));
        Item x = file("x", "data");
        x.e.xattrs = {{"system.posix_acl_access", "?"}};
        e = expect_error([&] { write_image(img, {x}); });
        CHECK(contains(e.what(), "xattr 'system.posix_acl_access'"));

        // A source that ends early.
        Item shortfile = file("short", "abc");
        shortfile.e.size = 10;
        e = expect_error([&] { write_image(img, {shortfile}); });
        CHECK(contains(e.what(), "entry 'short': test entries ended after 3 of 10 bytes"));

        // Dropped without commit.
        {
            VecSource src({file("a", "a")});
            auto sink = ch::image::make_squash_sink(img);
            Entry en;
            while (src.next(en))
                sink->add(en, src);
        }
        std::vector<std::string> left;
        for (const auto& de : fs::directory_iterator(tmp.path))
            left.push_back(de.path().filename().string());
        CHECK(left.empty());
    }

    TEST_CASE("squash source: refuses a file that is not SquashFS, by name") {
        TempDir tmp;
        const fs::path p = tmp / "not.sqfs";
        std::ofstream(p) << "this is not a squashfs image, not even close\n";
        ch::Error e = expect_error([&] { ch::image::make_squash_source(p); });
        CHECK(e.exit_code() == ch::Exit::squash);
        CHECK(std::string(e.what()) ==
              "can't read " + p.string() + ": not a SquashFS file (bad magic)");
        std::ofstream(tmp / "empty.sqfs").flush();
        e = expect_error([&] { ch::image::make_squash_source(tmp / "empty.sqfs"); });
        CHECK(contains(e.what(), "bad magic"));
        e = expect_error([&] { ch::image::make_squash_source(tmp / "missing.sqfs"); });
        CHECK(contains(e.what(), "can't open " + (tmp / "missing.sqfs").string()));
    }

    TEST_CASE("squash source: a truncated image") {
        TempDir tmp;
        const fs::path img = tmp / "t.sqfs";
        write_image(img, sample_tree());
        const auto full = fs::file_size(img);
        fs::resize_file(img, full / 2);
        ch::Error e = expect_error([&] { read_image(img); });
        CHECK(e.exit_code() == ch::Exit::squash);
        CHECK(contains(e.what(), "can't read " + img.string() + ": truncated (" +
                                     std::to_string(full / 2) + " bytes; the superblock says "));
        fs::resize_file(img, 50);
        e = expect_error([&] { read_image(img); });
        CHECK(contains(e.what(), "truncated (50 bytes, smaller than a SquashFS superblock)"));
    }

    TEST_CASE("squash source: corrupted metadata and data") {
        TempDir tmp;
        const fs::path img = tmp / "c.sqfs";
        write_image(img, sample_tree());
        const std::string good = slurp(img);
        auto u64 = [&](std::size_t off) {
            std::uint64_t v = 0;
            std::memcpy(&v, good.data() + off, 8); // little-endian host
            return v;
        };
        const std::uint64_t inode_table = u64(64), dir_table = u64(72);
        auto damaged = [&](std::uint64_t at, const std::string& junk) {
            std::string bad = good;
            bad.replace(at, junk.size(), junk);
            std::ofstream(img, std::ios::binary | std::ios::trunc) << bad;
        };

        // Garbage inside the compressed inode table, then inside the directory
        // table: either the decompressor or the checks must notice.
        for (const std::uint64_t at :
             {inode_table + 2, dir_table + 2, inode_table + 20, dir_table + 9}) {
            INFO("damage at ", at);
            damaged(at, std::string(16, '\xA5'));
            const ch::Error e = expect_error([&] { read_image(img); });
            CHECK(e.exit_code() == ch::Exit::squash);
            CHECK(contains(e.what(), "can't read " + img.string() + ": "));
        }
        // A metadata block header claiming more than a block holds.
        damaged(inode_table, std::string("\xff\x7f", 2));
        ch::Error e = expect_error([&] { read_image(img); });
        CHECK(e.exit_code() == ch::Exit::squash);

        // Damaged file data: the first data block (right after the superblock).
        damaged(96 + 10, std::string(64, '\x5A'));
        e = expect_error([&] { read_image(img); });
        CHECK(e.exit_code() == ch::Exit::squash);
        CHECK(contains(e.what(), "': a compressed block is not a valid zlib stream"));
    }

    TEST_CASE("squash source: rewind gives the same entries again") {
        TempDir tmp;
        const fs::path img = tmp / "r.sqfs";
        write_image(img, sample_tree());
        auto src = ch::image::make_squash_source(img);
        auto walk = [&] {
            std::vector<std::string> v;
            Entry e;
            while (src->next(e)) {
                char buf[100];
                std::size_t n = src->read(buf, sizeof buf); // partly read: the rest is skipped
                v.push_back(e.path + ":" + std::to_string(static_cast<int>(e.type)) + ":" +
                            std::string(buf, n));
            }
            return v;
        };
        const auto one = walk();
        src->rewind();
        CHECK(walk() == one);
        CHECK(one.size() == 22);
    }

    TEST_CASE("squash source: images made by mksquashfs, with devices, FIFOs and hard links" *
              doctest::skip(!has_program("mksquashfs"))) {
        TempDir tmp;
        const fs::path d = tmp / "d";
        fs::create_directories(d / "sub");
        std::ofstream(d / "a") << "hello\n";
        REQUIRE(::link((d / "a").c_str(), (d / "sub/b").c_str()) == 0);
        fs::create_symlink("a", d / "l");
        const bool xattrs = ::lsetxattr((d / "a").c_str(), "user.origin", "mksquashfs", 10, 0) == 0;
        { // sparse: data, a 1 MiB hole, data
            const int fd = ::open((d / "sparse").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            REQUIRE(fd >= 0);
            REQUIRE(::pwrite(fd, "head", 4, 0) == 4);
            REQUIRE(::pwrite(fd, "tail", 4, 1 << 20) == 4);
            ::close(fd);
        }
        const fs::path img = tmp / "mk.sqfs";
        const Run r =
            run("mksquashfs " + d.string() + " " + img.string() +
                " -noappend -quiet -no-progress -p 'null c 666 0 0 1 3' -p 'sda b 660 0 6 8 0'"
                " -p 'pipe i 600 0 0 f' -p 'big c 600 0 0 259 70000'");
        REQUIRE_MESSAGE(r.status == 0, r.out);
        auto m = by_path(read_image(img));
        CHECK(m["null"].e.type == EntryType::chardev);
        CHECK(m["null"].e.dev_major == 1);
        CHECK(m["null"].e.dev_minor == 3);
        CHECK(m["null"].e.mode == 0666);
        CHECK(m["sda"].e.type == EntryType::blockdev);
        CHECK(m["sda"].e.gid == 6);
        CHECK(m["sda"].e.dev_major == 8);
        CHECK(m["big"].e.dev_major == 259);
        CHECK(m["big"].e.dev_minor == 70000);
        CHECK(m["pipe"].e.type == EntryType::fifo);
        CHECK(m["a"].e.type == EntryType::file);
        CHECK(m["a"].data == "hello\n");
        if (xattrs) {
            REQUIRE(m["a"].e.xattrs.size() == 1);
            CHECK(m["a"].e.xattrs[0].name == "user.origin");
            CHECK(m["a"].e.xattrs[0].value == "mksquashfs");
        }
        CHECK(m["sub/b"].e.type == EntryType::hardlink);
        CHECK(m["sub/b"].e.link_target == "a");
        CHECK(m["l"].e.link_target == "a");
        CHECK(m["sparse"].e.size == (1 << 20) + 4);
        REQUIRE(m["sparse"].e.sparse);
        CHECK(logical(m["sparse"]) == "head" + std::string((1 << 20) - 4, '\0') + "tail");
    }

} // TEST_SUITE

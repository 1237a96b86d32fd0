// ldso.cc: see ldso.hh. The cache layout (header, 24-byte entries, strings
// addressed from the header's start) is glibc's, checked against this host's
// /etc/ld.so.cache and `ldconfig -c compat` output in the unit tests.
#include "image/ldso.hh"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <optional>
#include <set>

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>

#include "util/error.hh"
#include "util/fd.hh"

namespace ch::image {

namespace {

constexpr std::string_view old_magic{"ld.so-1.7.0", 11};
constexpr std::string_view new_magic{"glibc-ld.so.cache1.1", 20};
constexpr std::size_t new_header_size = 48; // magic, nlibs, len_strings, flags, pad, ext, unused[3]
constexpr std::size_t new_entry_size = 24;  // flags, key, value, osversion, hwcap
constexpr std::size_t old_entry_size = 12;  // flags, key, value

template <typename T>
T get(std::string_view d, std::size_t off) {
    T v;
    std::memcpy(&v, d.data() + off, sizeof v);
    return v;
}

std::string_view cache_string(std::string_view d, std::size_t base, std::uint32_t off) {
    if (off >= d.size() - base)
        fail("string offset ", off, " outside the file");
    const std::size_t at = base + off;
    const void* nul = std::memchr(d.data() + at, '\0', d.size() - at);
    if (!nul)
        fail("string at offset ", off, " not terminated");
    return d.substr(at, static_cast<std::size_t>(static_cast<const char*>(nul) - (d.data() + at)));
}

} // namespace

namespace {

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

int ld_cache_cmp_from(std::string_view a, std::string_view b) {
    const auto digit = is_digit;
    std::size_t i = 0, j = 0;
    while (i < a.size()) {
        if (j >= b.size())
            return 1;
        if (digit(a[i])) {
            if (!digit(b[j]))
                return 1;
            // Numbers compare by value; long runs can't overflow: leading
            // zeros are skipped and then the longer run is the larger.
            while (i + 1 < a.size() && a[i] == '0' && digit(a[i + 1]))
                i++;
            while (j + 1 < b.size() && b[j] == '0' && digit(b[j + 1]))
                j++;
            std::size_t ie = i, je = j;
            while (ie < a.size() && digit(a[ie]))
                ie++;
            while (je < b.size() && digit(b[je]))
                je++;
            if (ie - i != je - j)
                return ie - i < je - j ? -1 : 1;
            const int c = a.substr(i, ie - i).compare(b.substr(j, je - j));
            if (c != 0)
                return c;
            i = ie;
            j = je;
        } else if (digit(b[j])) {
            return -1;
        } else if (a[i] != b[j]) {
            // As the loader compares: plain char, signed where char is.
            return a[i] - b[j];
        } else {
            i++;
            j++;
        }
    }
    return j < b.size() ? -1 : 0;
}

} // namespace

int ld_cache_cmp(std::string_view a, std::string_view b) {
    // Equal bytes compare equal in the loader's order too, so skip the
    // common prefix, back to the start of a digit run it ends in (a number
    // compares whole). Most names differ early, in a letter.
    std::size_t k = 0;
    const std::size_t n = std::min(a.size(), b.size());
    while (k < n && a[k] == b[k])
        k++;
    while (k > 0 && is_digit(a[k - 1]))
        k--;
    return ld_cache_cmp_from(a.substr(k), b.substr(k));
}

namespace {

// Where a cache's new-format table starts, and how many entries it has,
// checked against the file's size.
struct CacheLayout {
    std::size_t base = 0;
    std::uint32_t nlibs = 0;

    std::size_t entries_end() const { return base + new_header_size + nlibs * new_entry_size; }
};

CacheLayout cache_layout(std::string_view d) {
    if (d.size() > ld_cache_max_bytes)
        fail("larger than ", ld_cache_max_bytes, " bytes");
    std::size_t base = 0;
    if (d.substr(0, old_magic.size()) == old_magic) {
        // The old table (12 + 4 bytes of header) comes first; the new one
        // starts after it, aligned to 8.
        if (d.size() < 16)
            fail("truncated header");
        const auto n = get<std::uint32_t>(d, 12);
        if (n > (d.size() - 16) / old_entry_size)
            fail("old table larger than the file");
        base = (16 + n * old_entry_size + 7) & ~std::size_t{7};
        if (base > d.size() || d.substr(base, new_magic.size()) != new_magic)
            fail("old format only (glibc before 2.3); run ldconfig in the image to renew it");
    } else if (d.substr(0, new_magic.size()) != new_magic) {
        fail("not a glibc ld.so.cache");
    }
    if (d.size() - base < new_header_size)
        fail("truncated header");
    const auto nlibs = get<std::uint32_t>(d, base + 20);
    if (nlibs > (d.size() - base - new_header_size) / new_entry_size)
        fail(nlibs, " entries don't fit in ", d.size(), " bytes");
    return {base, nlibs};
}

} // namespace

std::vector<LdCacheRef> parse_ld_cache_refs(std::string_view d) {
    const auto [base, nlibs] = cache_layout(d);
    std::vector<LdCacheRef> out;
    out.reserve(nlibs);
    for (std::uint32_t i = 0; i < nlibs; i++) {
        const std::size_t at = base + new_header_size + i * new_entry_size;
        LdCacheRef e;
        e.flags = get<std::int32_t>(d, at);
        e.key = cache_string(d, base, get<std::uint32_t>(d, at + 4));
        e.value = cache_string(d, base, get<std::uint32_t>(d, at + 8));
        e.hwcap = get<std::uint64_t>(d, at + 16);
        out.push_back(e);
    }
    return out;
}

std::vector<LdCacheEntry> parse_ld_cache(std::string_view d) {
    std::vector<LdCacheEntry> out;
    for (const auto& r : parse_ld_cache_refs(d))
        out.push_back({std::string(r.key), std::string(r.value), r.flags, r.hwcap});
    return out;
}

bool ld_cache_before(const LdCacheRef& a, const LdCacheRef& b) {
    const int c = ld_cache_cmp(a.key, b.key);
    if (c != 0)
        return c > 0;
    if (a.flags != b.flags)
        return a.flags > b.flags;
    return a.hwcap > b.hwcap;
}

LdCacheView::LdCacheView(std::string_view data)
    : data_(data) {
    const auto layout = cache_layout(data);
    base_ = layout.base;
    const std::size_t n = layout.nlibs;
    // Every entry once, so that a damaged one is found here and not halfway
    // through a merge; the lengths found are kept, so that no string is
    // scanned again.
    lengths_.reserve(2 * n);
    for (std::size_t i = 0; i < n; i++) {
        const std::size_t at = base_ + new_header_size + i * new_entry_size;
        for (const std::size_t field : {at + 4, at + 8}) {
            const auto len = cache_string(data_, base_, get<std::uint32_t>(data_, field)).size();
            if (len > UINT16_MAX)
                fail("string of ", len, " bytes"); // no path is that long
            lengths_.push_back(static_cast<std::uint16_t>(len));
        }
        if (i > 0 && sorted_ && ld_cache_before((*this)[i], (*this)[i - 1]))
            sorted_ = false;
    }
}

LdCacheRef LdCacheView::operator[](std::size_t i) const {
    const std::size_t at = base_ + new_header_size + i * new_entry_size;
    // The bytes may be a mapping of a file that its owner rewrites while it
    // is read: an offset is checked again each time it is read.
    const auto string = [&](std::size_t field, std::size_t len) {
        const std::size_t pos = base_ + get<std::uint32_t>(data_, field);
        if (pos > data_.size() || len > data_.size() - pos)
            fail("changed while it was read");
        return data_.substr(pos, len);
    };
    LdCacheRef e;
    e.flags = get<std::int32_t>(data_, at);
    e.key = string(at + 4, lengths_[2 * i]);
    e.value = string(at + 8, lengths_[2 * i + 1]);
    e.hwcap = get<std::uint64_t>(data_, at + 16);
    return e;
}

std::string_view LdCacheView::after_entries() const {
    if (data_.empty())
        return {};
    return data_.substr(base_ + new_header_size + size() * new_entry_size);
}

std::optional<LdCacheRef> find_ld_cache(std::string_view data, std::string_view soname,
                                        std::int32_t flags) {
    const auto [base, n] = cache_layout(data);
    const auto entry = [&, base = base](std::size_t i) {
        const std::size_t at = base + new_header_size + i * new_entry_size;
        LdCacheRef e;
        e.flags = get<std::int32_t>(data, at);
        e.key = cache_string(data, base, get<std::uint32_t>(data, at + 4));
        e.hwcap = get<std::uint64_t>(data, at + 16);
        return e;
    };
    const auto match = [&, base = base](std::size_t i) -> std::optional<LdCacheRef> {
        LdCacheRef e = entry(i);
        if (e.key != soname || e.flags != flags || e.hwcap != 0)
            return std::nullopt;
        const std::size_t at = base + new_header_size + i * new_entry_size;
        e.value = cache_string(data, base, get<std::uint32_t>(data, at + 8));
        return e;
    };
    // Descending names: the first entry not after soname, then its equals.
    std::size_t lo = 0, hi = n;
    while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (ld_cache_cmp(entry(mid).key, soname) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (std::size_t i = lo; i < n && entry(i).key == soname; i++)
        if (auto e = match(i))
            return e;
    for (std::size_t i = 0; i < n; i++)
        if (auto e = match(i))
            return e;
    return std::nullopt;
}

namespace {

// The cache merged from a and b (see make_ld_cache_merged), as the order to
// write its entries in: i < a.size() is a[i], the rest b[i - a.size()]. B is
// a vector of entries or an LdCacheView, whose entries are made as they are
// asked for: ch-run merges an image's cache of hundreds of entries at every
// --inject start, where each page of fresh memory costs more than the merge.
template <typename B>
std::vector<std::uint32_t> merge_order(const std::vector<LdCacheRef>& a, const B& b, Merge how) {
    std::vector<std::uint32_t> order;
    order.reserve(a.size() + b.size());
    std::optional<LdCacheRef> last; // the last emitted
    const auto give = [&](const LdCacheRef& e, std::size_t index) {
        // Of equal entries the first given is the one the loader takes; the
        // later ones are dropped.
        if (last && last->key == e.key && last->flags == e.flags && last->hwcap == e.hwcap)
            return;
        last = e;
        order.push_back(static_cast<std::uint32_t>(index));
    };
    const LdCacheRef* last_a = nullptr;
    std::size_t i = 0, j = 0;
    while (i < a.size() || j < b.size()) {
        if (j == b.size()) {
            give(a[i], i);
            i++;
            continue;
        }
        const LdCacheRef e = b[j];
        if (i < a.size() && !ld_cache_before(e, a[i])) {
            last_a = &a[i];
            give(a[i], i);
            i++;
            continue;
        }
        j++;
        // Both lists are in key order, so a name that a has is a's next
        // entry or its last one.
        if (how == Merge::replace && (e.hwcap != 0 || (i < a.size() && a[i].key == e.key) ||
                                      (last_a && last_a->key == e.key)))
            continue;
        give(e, a.size() + j - 1);
    }
    return order;
}

template <typename T>
void put_at(char* d, std::size_t off, T v) {
    std::memcpy(d + off, &v, sizeof v);
}

// A new-format header for n entries and strings_size bytes of strings.
void put_header(char* out, std::size_t n, std::size_t strings_size) {
    std::memcpy(out, new_magic.data(), new_magic.size());
    put_at<std::uint32_t>(out, 20, static_cast<std::uint32_t>(n));
    put_at<std::uint32_t>(out, 24, static_cast<std::uint32_t>(strings_size));
    // glibc's cache_file_new_flags_endian_little (2) or _big (3).
    out[28] = std::endian::native == std::endian::little ? 2 : 3;
}

// Bytes handed to sink in parts of up to 8 KiB, from a buffer on the stack.
class Buffered {
public:
    explicit Buffered(const LdCacheSink& sink)
        : sink_(sink) {}

    void put(std::string_view s) {
        while (!s.empty()) {
            if (len_ == sizeof buf_)
                flush();
            const std::size_t n = std::min(s.size(), sizeof buf_ - len_);
            std::memcpy(buf_ + len_, s.data(), n);
            len_ += n;
            s.remove_prefix(n);
        }
    }

    void flush() {
        if (len_ > 0)
            sink_(std::string_view(buf_, len_));
        len_ = 0;
    }

private:
    const LdCacheSink& sink_;
    char buf_[8192];
    std::size_t len_ = 0;
};

// The cache of a and b, merged as how says, to sink. Strings inside kept (a
// part of the image's cache that is given to sink whole, after the entries)
// are referred to there; the others are written after it.
template <typename B>
void write_merged(const std::vector<LdCacheRef>& a, const B& b, Merge how, std::string_view kept,
                  const LdCacheSink& sink) {
    const auto inside = [&](std::string_view str) {
        const char* k = kept.data();
        return !kept.empty() && !std::less<const char*>{}(str.data(), k) &&
               std::less<const char*>{}(str.data(), k + kept.size());
    };
    const auto order = merge_order(a, b, how);
    const auto entry = [&](std::uint32_t k) -> LdCacheRef {
        return k < a.size() ? a[k] : b[k - a.size()];
    };
    std::size_t copied = 0;
    for (const std::uint32_t k : order) {
        const LdCacheRef e = entry(k);
        for (const std::string_view str : {e.key, e.value})
            if (!inside(str))
                copied += str.size() + 1;
    }
    const std::size_t strings_at = new_header_size + order.size() * new_entry_size;
    if (strings_at + kept.size() + copied > UINT32_MAX)
        fail("generated ld.so.cache larger than 4 GiB");
    Buffered out(sink);
    char header[new_header_size] = {};
    put_header(header, order.size(), kept.size() + copied);
    out.put(std::string_view(header, sizeof header));
    std::size_t next = strings_at + kept.size(); // where the next copied string goes
    const auto offset = [&](std::string_view str) {
        if (inside(str))
            return static_cast<std::uint32_t>(strings_at +
                                              static_cast<std::size_t>(str.data() - kept.data()));
        const std::size_t at = next;
        next += str.size() + 1;
        return static_cast<std::uint32_t>(at);
    };
    for (const std::uint32_t k : order) {
        const LdCacheRef e = entry(k);
        char bytes[new_entry_size] = {};
        put_at<std::int32_t>(bytes, 0, e.flags);
        put_at<std::uint32_t>(bytes, 4, offset(e.key));
        put_at<std::uint32_t>(bytes, 8, offset(e.value));
        put_at<std::uint64_t>(bytes, 16, e.hwcap);
        out.put(std::string_view(bytes, sizeof bytes));
    }
    out.flush();
    if (!kept.empty())
        sink(kept);
    for (const std::uint32_t k : order) {
        const LdCacheRef e = entry(k);
        for (const std::string_view str : {e.key, e.value})
            if (!inside(str))
                out.put(str), out.put(std::string_view("", 1)); // and its NUL
    }
    out.flush();
}

std::string to_string(const std::function<void(const LdCacheSink&)>& write) {
    std::string out;
    write([&](std::string_view part) { out.append(part); });
    return out;
}

} // namespace

std::string make_ld_cache_merged(const std::vector<LdCacheRef>& a, const std::vector<LdCacheRef>& b,
                                 Merge how) {
    return to_string([&](const LdCacheSink& sink) { write_merged(a, b, how, {}, sink); });
}

void splice_ld_cache(const std::vector<LdCacheRef>& ours, const LdCacheView& theirs,
                     const LdCacheSink& sink) {
    // The image's strings stay where they are, after its entries: only the
    // entries are written anew, with their offsets moved. Strings that are
    // not there (ours, or a hostile cache's pointing into its own table) are
    // copied after them. An image cache out of the loader's order (ldconfig
    // never writes one) is sorted first, as a copy of its entries.
    if (theirs.sorted()) {
        write_merged(ours, theirs, Merge::replace, theirs.after_entries(), sink);
        return;
    }
    std::vector<LdCacheRef> sorted;
    sorted.reserve(theirs.size());
    for (std::size_t i = 0; i < theirs.size(); i++)
        sorted.push_back(theirs[i]);
    std::stable_sort(sorted.begin(), sorted.end(), ld_cache_before);
    write_merged(ours, sorted, Merge::replace, theirs.after_entries(), sink);
}

std::string splice_ld_cache(const std::vector<LdCacheRef>& ours, const LdCacheView& theirs) {
    return to_string([&](const LdCacheSink& sink) { splice_ld_cache(ours, theirs, sink); });
}

std::string make_ld_cache_refs(std::vector<LdCacheRef> entries) {
    // Stable: of two equal entries the first given stays first.
    if (!std::is_sorted(entries.begin(), entries.end(), ld_cache_before))
        std::stable_sort(entries.begin(), entries.end(), ld_cache_before);
    return make_ld_cache_merged(entries, {});
}

std::string make_ld_cache(const std::vector<LdCacheEntry>& entries) {
    std::vector<LdCacheRef> refs;
    refs.reserve(entries.size());
    for (const auto& e : entries)
        refs.push_back({e.key, e.value, e.flags, e.hwcap});
    return make_ld_cache_refs(std::move(refs));
}

namespace {

// A file inside the image: "" when missing, its text when a regular file.
std::string read_in_root(int rootfd, const std::string& path) {
    const Fd p = resolve_in_root(rootfd, path);
    if (!p) {
        if (errno == ENOENT || errno == ENOTDIR)
            return {};
        throw_errno("can't open ", path, " in the image");
    }

    struct stat st {};

    if (::fstat(p.get(), &st) != 0)
        throw_errno("can't stat ", path, " in the image");
    if (!S_ISREG(st.st_mode))
        fail("can't read ", path, " in the image: not a regular file");
    const Fd f = open_at(AT_FDCWD, p.proc_path(), O_RDONLY | O_NONBLOCK | O_NOCTTY);
    return read_all(f.get(), cat(path, " in the image"), ld_conf_max_bytes);
}

std::string dir_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos || slash == 0 ? "/" : path.substr(0, slash);
}

struct ConfReader {
    int rootfd;
    std::vector<std::string> dirs;
    std::set<std::string> seen_dirs;
    std::size_t files = 0;

    void read(const std::string& path, int depth) {
        if (depth > ld_conf_max_depth)
            fail("can't read ", path, " in the image: includes nested deeper than ",
                 ld_conf_max_depth);
        if (++files > ld_conf_max_files)
            fail("can't read ", path, " in the image: more than ", ld_conf_max_files,
                 " ld.so.conf files");
        const std::string text = read_in_root(rootfd, path);
        for (std::string line : split(text, '\n')) {
            line = line.substr(0, line.find('#'));
            std::vector<std::string> words;
            for (const auto& w : split(line, ' '))
                for (const auto& w2 : split(w, '\t'))
                    if (!w2.empty())
                        words.push_back(w2);
            if (words.empty())
                continue;
            if (words[0] == "include") {
                for (std::size_t i = 1; i < words.size(); i++)
                    include(words[i], dir_of(path), depth);
            } else if (words[0] == "hwcap") {
                continue; // an obsolete directive
            } else {
                for (const auto& w : words) // "DIR", "DIR=TYPE", "DIR:DIR"
                    for (const auto& d : split(w, ':'))
                        add_dir(d.substr(0, d.find('=')));
            }
        }
    }

    void add_dir(const std::string& d) {
        if (d.empty() || d[0] != '/')
            return; // ldconfig, too, wants absolute directories
        const std::string n = normalize_abs(d);
        if (seen_dirs.insert(n).second)
            dirs.push_back(n);
    }

    void include(const std::string& pattern, const std::string& from, int depth) {
        const std::string full = pattern[0] == '/' ? pattern : from + "/" + pattern;
        const std::string dir = dir_of(full);
        const std::string glob = full.substr(full.rfind('/') + 1);
        if (glob.find_first_of("*?[") == std::string::npos)
            return read(full, depth + 1);
        const Fd p = resolve_in_root(rootfd, dir);
        if (!p)
            return;
        Fd d = try_open_at(AT_FDCWD, p.proc_path(), O_RDONLY | O_DIRECTORY);
        if (!d)
            return;
        std::unique_ptr<DIR, FreeWith<closedir>> ds(::fdopendir(d.release()));
        if (!ds)
            throw_errno("can't read directory ", dir, " in the image");
        std::vector<std::string> names;
        while (const dirent* e = ::readdir(ds.get())) {
            if (::fnmatch(glob.c_str(), e->d_name, FNM_PERIOD) == 0)
                names.emplace_back(e->d_name);
            if (names.size() > ld_conf_max_files)
                fail("can't read ", dir, " in the image: more than ", ld_conf_max_files,
                     " files match ", glob);
        }
        std::sort(names.begin(), names.end());
        for (const auto& n : names)
            read(dir + "/" + n, depth + 1);
    }
};

bool is_dir_in_root(int rootfd, const std::string& path) {
    const Fd p = resolve_in_root(rootfd, path);

    struct stat st {};

    return p && ::fstat(p.get(), &st) == 0 && S_ISDIR(st.st_mode);
}

} // namespace

std::vector<std::string> ld_so_conf_dirs(int rootfd) {
    ConfReader r{rootfd, {}, {}, 0};
    r.read("/etc/ld.so.conf", 0);
    return r.dirs;
}

std::string image_lib_dir(int rootfd) {
    for (const auto& d : ld_so_conf_dirs(rootfd))
        if (is_dir_in_root(rootfd, d))
            return d;
    return is_dir_in_root(rootfd, "/usr/lib64") ? "/usr/lib64" : "/usr/lib";
}

} // namespace ch::image

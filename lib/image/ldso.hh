// ldso.hh: an image's dynamic loader configuration, read as untrusted input.
// - ld_so_conf_dirs: the directories /etc/ld.so.conf (and what it includes)
//   lists, every path resolved inside the image root.
// - ld.so.cache in glibc's format ("glibc-ld.so.cache1.1", alone or after the
//   old "ld.so-1.7.0" table): parsed with every offset checked, and written.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ch::image {

// Limits for hostile images: a cache larger than this is refused, and so is
// an ld.so.conf tree with more files, deeper includes or larger files.
constexpr std::size_t ld_cache_max_bytes = 16 << 20;
constexpr std::size_t ld_conf_max_files = 256;
constexpr int ld_conf_max_depth = 8;
constexpr std::size_t ld_conf_max_bytes = 1 << 20;

struct LdCacheEntry {
    std::string key;   // the soname: "libz.so.1"
    std::string value; // the path: "/lib/x86_64-linux-gnu/libz.so.1"
    std::int32_t flags = 0;
    std::uint64_t hwcap = 0; // non-zero: an optimised variant (glibc-hwcaps)
};

// An entry whose strings live elsewhere: in the parsed cache's bytes, or in
// LdCacheEntry values. ch-run merges a whole image cache at each start with
// --inject, so it copies no strings.
struct LdCacheRef {
    std::string_view key, value;
    std::int32_t flags = 0;
    std::uint64_t hwcap = 0;
};

// Throws Error "WHY" (the caller names the file) for anything that is not a
// well-formed cache. The refs point into data.
std::vector<LdCacheEntry> parse_ld_cache(std::string_view data);
std::vector<LdCacheRef> parse_ld_cache_refs(std::string_view data);

// The loader's order: descending by ld_cache_cmp, then by flags and hwcap.
bool ld_cache_before(const LdCacheRef& a, const LdCacheRef& b);

// A cache of the entries in the order the loader's binary search expects.
// Entries with the same key, flags and hwcap: the first given wins, so
// callers put theirs first. Entries already in order (a cache ldconfig
// wrote) cost one comparison each.
std::string make_ld_cache_refs(std::vector<LdCacheRef> entries);
// The same for two lists already in the loader's order, merged (of equal
// entries, a's first), with no merged copy made. Merge::replace leaves out
// b's entries for names that a has, and b's glibc-hwcaps variants: a's
// entries replace them.
enum class Merge { keep, replace };
std::string make_ld_cache_merged(const std::vector<LdCacheRef>& a, const std::vector<LdCacheRef>& b,
                                 Merge how = Merge::keep);
std::string make_ld_cache(const std::vector<LdCacheEntry>& entries);

// An image's cache, read in place: the layout and every entry's strings are
// checked once, when it is made (throws Error "WHY" as parse_ld_cache_refs
// does, and for a string longer than 64 KiB), and entries are made from the
// bytes as they are asked for; only the strings' lengths are kept. data must
// outlive the view.
class LdCacheView {
public:
    LdCacheView() = default; // no entries
    explicit LdCacheView(std::string_view data);

    std::size_t size() const { return lengths_.size() / 2; }

    LdCacheRef operator[](std::size_t i) const; // points into data
    // The bytes after the entries: the strings, as ldconfig writes them.
    std::string_view after_entries() const;

    // In the loader's order (ld_cache_before), as ldconfig writes it.
    bool sorted() const { return sorted_; }

private:
    std::string_view data_;
    std::size_t base_ = 0;               // where the new-format table starts
    std::vector<std::uint16_t> lengths_; // each entry's key's and value's
    bool sorted_ = true;
};

// The plain entry (no glibc-hwcaps variant) for soname with these flags in
// the cache data, found as the loader finds it: a binary search in the
// loader's order, which reads a few entries, not all (ch-run looks up every
// library given by name at each start), then, if that finds nothing, a scan
// (a cache out of order). The layout and every string read are checked;
// throws Error "WHY" as parse_ld_cache_refs does. nullopt when there is none.
std::optional<LdCacheRef> find_ld_cache(std::string_view data, std::string_view soname,
                                        std::int32_t flags);

// Where a generated cache goes, part after part.
using LdCacheSink = std::function<void(std::string_view)>;

// A cache made of ours (in the loader's order) and an image's, merged as
// Merge::replace does, given to sink in parts: the header and entries in
// parts of up to 8 KiB, then the image's bytes after its entries, whole
// (its strings, kept where they are: only the offsets in the entries move),
// then the strings that were not there. Nothing the size of the cache is
// made in memory: ch-run does this at every --inject start.
void splice_ld_cache(const std::vector<LdCacheRef>& ours, const LdCacheView& theirs,
                     const LdCacheSink& sink);
// The same, as one string.
std::string splice_ld_cache(const std::vector<LdCacheRef>& ours, const LdCacheView& theirs);

// glibc's order of library names: digit runs compare as numbers, and a digit
// sorts after any other character. <0, 0, >0 like strcmp.
int ld_cache_cmp(std::string_view a, std::string_view b);

// The directories the image's ld.so.conf lists, in order, without
// duplicates, normalised ("/usr/local/lib"). Includes are globs in their
// last component only, as Debian's and Red Hat's "include ld.so.conf.d/*.conf"
// are. Missing files yield nothing; throws Error for a file that is not a
// regular file or breaks a limit above.
std::vector<std::string> ld_so_conf_dirs(int rootfd);

// Where shared libraries go in the image: the first directory of
// ld_so_conf_dirs that is a directory in the image, else /usr/lib64 or
// /usr/lib (glibc's own default path, scanned by ldconfig whatever the
// configuration says).
std::string image_lib_dir(int rootfd);

} // namespace ch::image

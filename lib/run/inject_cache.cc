// inject_cache.cc: the generated ld.so.cache of inject.hh. Apart from
// inject.cc, so that what apply.cc needs does not pull in the configuration
// loader (and yaml-cpp) for ch-checkns.
#include <algorithm>

#include <fcntl.h>
#include <sys/stat.h>

#include "run/inject.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

namespace ch::run {

void write_merged_ld_cache(const std::vector<image::LdCacheEntry>& libs,
                           std::optional<std::string_view> image_cache,
                           const image::LdCacheSink& sink) {
    // At every start with --inject: the image's entries, in order already
    // when ldconfig wrote them, are merged with ours where they lie rather
    // than copied and sorted again, and its strings are written as they are.
    std::vector<image::LdCacheRef> ours;
    ours.reserve(libs.size());
    for (const auto& l : libs)
        ours.push_back({l.key, l.value, l.flags, l.hwcap});
    std::stable_sort(ours.begin(), ours.end(), image::ld_cache_before);
    image::LdCacheView theirs;
    if (image_cache) {
        try {
            theirs = image::LdCacheView(*image_cache);
        } catch (const Error& e) {
            log::warning("ignoring the image's /etc/ld.so.cache: ", e.what(),
                         " (only injected libraries are in the generated one)");
        }
    }
    image::splice_ld_cache(ours, theirs, sink);
}

std::string merged_ld_cache(const std::vector<image::LdCacheEntry>& libs,
                            std::optional<std::string_view> image_cache) {
    std::string out;
    write_merged_ld_cache(libs, image_cache, [&](std::string_view part) { out.append(part); });
    return out;
}

void prepare_upper(int lowerfd, int upperfd, const std::string& path) {
    const bool is_dir = !path.empty() && path.back() == '/';
    std::vector<std::string> comps;
    for (auto& c : split(path, '/'))
        if (!c.empty())
            comps.push_back(std::move(c));
    Fd lower = open_at(lowerfd, ".", O_PATH | O_DIRECTORY);
    Fd upper = open_at(upperfd, ".", O_PATH | O_DIRECTORY);
    for (std::size_t i = 0; i < comps.size(); i++) {
        const char* c = comps[i].c_str();
        const bool last = i + 1 == comps.size();

        struct stat st {};

        const bool in_image = lower && ::fstatat(lower.get(), c, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (in_image && !S_ISDIR(st.st_mode) && !(last && !is_dir && S_ISLNK(st.st_mode))) {
            log::debug("not made in the writable layer: /", path, " (/", comps[i],
                       " in the image is not a directory)");
            return;
        }
        if (last && !is_dir) {
            const Fd f = try_open_at(upper.get(), c, O_WRONLY | O_CREAT | O_NOFOLLOW, 0644);
            if (!f)
                throw_errno("can't create /", path, " in the writable layer");
            return;
        }
        if (::mkdirat(upper.get(), c, 0755) != 0 && errno != EEXIST)
            throw_errno("can't create /", path, " in the writable layer");
        upper = open_at(upper.get(), c, O_PATH | O_DIRECTORY | O_NOFOLLOW);
        lower = in_image ? try_open_at(lower.get(), c, O_PATH | O_DIRECTORY | O_NOFOLLOW) : Fd();
    }
}

bool write_upper_ld_cache(int lowerfd, int upperfd, const std::vector<image::LdCacheEntry>& libs) {
    struct stat etc {};

    const bool has_etc = ::fstatat(lowerfd, "etc", &etc, AT_SYMLINK_NOFOLLOW) == 0;
    if (has_etc && !S_ISDIR(etc.st_mode))
        return false;
    auto image_cache = read_image_ld_cache(lowerfd);
    // The upper directory's mode is what the container sees for /etc.
    if (::mkdirat(upperfd, "etc", 0755) != 0 && errno != EEXIST)
        throw_errno("can't create /etc in the writable layer");
    if (has_etc && ::fchmodat(upperfd, "etc", etc.st_mode & 07777, 0) != 0)
        throw_errno("can't set the mode of /etc in the writable layer");
    const Fd dir = open_at(upperfd, "etc", O_PATH | O_DIRECTORY | O_NOFOLLOW);
    const Fd out =
        open_at(dir.get(), "ld.so.cache", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
    write_merged_ld_cache(libs, image_cache ? std::optional(image_cache->view()) : std::nullopt,
                          [&](std::string_view part) {
                              write_all(out.get(), part, "/etc/ld.so.cache in the writable layer");
                          });
    if (image_cache)
        image_cache->keep_until_exec(); // ch-run execs soon after
    return true;
}

void unlink_ld_cache_symlink(int rootfd) {
    const Fd etc = resolve_in_root(rootfd, "/etc");
    if (!etc)
        return;

    struct stat st {};

    if (::fstatat(etc.get(), "ld.so.cache", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
        ::unlinkat(etc.get(), "ld.so.cache", 0) != 0)
        throw_errno("can't replace the image's /etc/ld.so.cache, a symlink, in the writable layer");
}

std::optional<MappedFile> read_image_ld_cache(int rootfd) {
    // The usual case, a regular file in a directory, opened directly (this
    // runs at every --inject start): O_NOFOLLOW on both names keeps the walk
    // inside the root, and nothing but a regular file is opened (a device
    // could do something when opened). A symlink on the way takes the walk
    // that resolves it inside the root, and a second open.
    Fd f;
    if (const Fd etc = try_open_at(rootfd, "etc", O_PATH | O_DIRECTORY | O_NOFOLLOW)) {
        struct stat st {};

        if (::fstatat(etc.get(), "ld.so.cache", &st, AT_SYMLINK_NOFOLLOW) != 0)
            return std::nullopt;
        if (S_ISREG(st.st_mode))
            f = try_open_at(etc.get(), "ld.so.cache",
                            O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
        else if (!S_ISLNK(st.st_mode))
            return std::nullopt;
    } else if (errno != ENOTDIR) {
        return std::nullopt; // no /etc
    }
    if (!f) {
        const Fd p = resolve_in_root(rootfd, "/etc/ld.so.cache");
        if (!p)
            return std::nullopt;
        f = try_open_at(AT_FDCWD, p.proc_path(), O_RDONLY | O_NONBLOCK | O_NOCTTY);
        if (!f)
            return std::nullopt;
    }

    auto bytes =
        MappedFile::map(f.get(), image::ld_cache_max_bytes, "the image's /etc/ld.so.cache");
    if (!bytes && errno == EFBIG)
        log::warning("ignoring the image's /etc/ld.so.cache: larger than ",
                     image::ld_cache_max_bytes, " bytes");
    return bytes;
}

} // namespace ch::run

// image.cc: see image.hh.
#include "image/image.hh"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/layout.hh"
#include "util/error.hh"
#include "util/fd.hh"

namespace ch::image {

bool has_squash_magic(int fd) {
    char magic[4] = {};
    return ::pread(fd, magic, sizeof magic, 0) == 4 && std::memcmp(magic, "hsqs", 4) == 0;
}

bool is_squash_name(std::string_view path) {
    for (const char* ext : {".sqfs", ".squashfs", ".squash"})
        if (ends_with(path, ext))
            return true;
    return false;
}

const char* kind_name(Kind k) {
    switch (k) {
    case Kind::directory:
        return "directory";
    case Kind::squash:
        return "SquashFS file";
    case Kind::name:
        return "storage image";
    }
    return "?";
}

namespace {
// realpath(3): one call, where std::filesystem's canonical forms walk the
// path component by component in C++ (a measurable part of ch-run's start).
std::optional<std::string> real_path(const std::string& p) {
    char* r = ::realpath(p.c_str(), nullptr);
    if (r == nullptr)
        return std::nullopt;
    std::string out(r);
    std::free(r); // NOLINT(cppcoreguidelines-no-malloc): realpath's own allocation
    return out;
}

bool is_inside(const fs::path& child, const fs::path& parent) {
    const std::string c = child.string();
    const std::string p = parent.string();
    return c.size() > p.size() && c.compare(0, p.size(), p) == 0 && c[p.size()] == '/';
}
} // namespace

Image resolve_image(std::string_view ref, const fs::path& storage, bool unsafe) {
    Image img;
    img.ref = ref;
    if (auto stored = storage::find_image(storage, ref)) {
        img.kind = Kind::name;
        img.path = std::move(*stored);
        return img;
    }

    struct stat st {};

    const std::string path(ref);
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT && !storage::is_image_name(ref)) // a path, never a name
            fail("can't find image ", printable(ref), ": no such file or directory");
        if (errno == ENOENT)
            fail("can't find image ", printable(ref),
                 ": no such file or directory, and no image of "
                 "that name in ",
                 storage.string());
        throw_errno("can't stat image ", printable(ref));
    }
    if (S_ISDIR(st.st_mode)) {
        img.kind = Kind::directory;
        const auto real = real_path(path);
        if (!real)
            throw_errno("can't resolve image path ", printable(ref));
        img.path = *real;
        // A storage directory that does not exist holds no image.
        const auto storage_real = real_path(storage.string());
        if (!unsafe && storage_real && is_inside(img.path, *storage_real))
            fail("can't run ", printable(ref), ": directory is inside storage ", *storage_real,
                 " (run it by name instead)");
        return img;
    }
    if (S_ISREG(st.st_mode)) {
        const Fd fd = try_open_at(AT_FDCWD, path, O_RDONLY);
        if (!fd)
            throw_errno_code(is_squash_name(path) ? Exit::squash : Exit::misc, "can't open image ",
                             printable(ref));
        if (has_squash_magic(fd.get())) {
            img.kind = Kind::squash;
            img.path = fs::absolute(path);
            return img;
        }
        // Named like a SquashFS file: say what is wrong with it.
        if (is_squash_name(path))
            throw Error(cat("can't mount ", printable(ref), ": not a SquashFS file (bad magic)"),
                        Exit::squash);
    }
    fail("can't run ", printable(ref), ": unknown image type (not a directory or a SquashFS file)");
}

} // namespace ch::image

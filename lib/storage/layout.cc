// layout.cc: see layout.hh.
#include "storage/layout.hh"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include "util/error.hh"

namespace ch::storage {

namespace {
// "st/" and "st" are one directory, but lstat and O_NOFOLLOW see a symlink
// only without the slash, which makes the kernel follow it.
fs::path without_trailing_slash(fs::path p) {
    while (!p.has_filename() && p.has_relative_path())
        p = p.parent_path();
    return p;
}
} // namespace

StorageDir storage_dir(const std::optional<fs::path>& option) {
    if (option)
        return {without_trailing_slash(*option), "-s"};
    if (const char* env = std::getenv("CH_IMAGE_STORAGE"); env != nullptr && *env != '\0') {
        if (env[0] != '/')
            fail("$CH_IMAGE_STORAGE must be an absolute path: ", env);
        return {without_trailing_slash(env), "$CH_IMAGE_STORAGE"};
    }
    const char* user = std::getenv("USER");
    if (user == nullptr || *user == '\0')
        fail("$USER not set");
    return {cat("/var/tmp/", user, ".ch"), "default"};
}

std::string ref_to_dirname(std::string_view ref) {
    std::string out(ref);
    for (auto& c : out) {
        if (c == '/')
            c = '%';
        else if (c == ':')
            c = '+';
    }
    return out;
}

std::string dirname_to_ref(std::string_view name) {
    std::string out(name);
    for (auto& c : out) {
        if (c == '%')
            c = '/';
        else if (c == '+')
            c = ':';
    }
    return out;
}

bool is_image_name(std::string_view ref) {
    if (ref.empty() || ref[0] == '.' || ref[0] == '/')
        return false;
    // Components in either spelling: "a/../b" and "a%..%b" name the same directory.
    std::string plain = dirname_to_ref(ref);
    for (const auto& c : split(plain, '/'))
        if (c.empty() || c == "." || c == "..")
            return false;
    return true;
}

std::string image_dirname(std::string_view ref) {
    if (!is_image_name(ref))
        fail("bad image name '", printable(ref),
             "' (for a directory, give a path starting with / or ./)");
    return ref_to_dirname(ref);
}

fs::path images_dir(const fs::path& storage) {
    return storage / "img";
}

fs::path image_dir(const fs::path& storage, std::string_view ref) {
    return images_dir(storage) / image_dirname(ref);
}

fs::path mount_dir(const fs::path& storage) {
    return storage / "mnt";
}

namespace {

// From /etc/passwd, not NSS: ch-run links statically, where NSS would need
// glibc's shared libraries at run time. Only for messages.
std::string user_name(uid_t uid) {
    std::string name;
    if (FILE* f = std::fopen("/etc/passwd", "re")) {
        while (const struct passwd* pw = ::fgetpwent(f))
            if (pw->pw_uid == uid) {
                name = pw->pw_name;
                break;
            }
        std::fclose(f);
    }
    return name.empty() ? cat("uid ", uid) : cat(name, " (uid ", uid, ")");
}

std::string fix_for(const std::string& problem_kind, const fs::path& path) {
    if (problem_kind == "owner")
        return "have its owner remove it, or use storage of your own with -s or $CH_IMAGE_STORAGE";
    if (problem_kind == "mode")
        return cat("fix: chmod go-w ", path.string());
    return "give the real path with -s or $CH_IMAGE_STORAGE";
}

// The problem and its kind ("owner", "mode", "type"), for the fix hint.
std::optional<std::pair<std::string, std::string>> classify(const struct stat& st, uid_t uid) {
    if (S_ISLNK(st.st_mode))
        return std::pair<std::string, std::string>{"is a symlink", "type"};
    if (!S_ISDIR(st.st_mode))
        return std::pair<std::string, std::string>{"is not a directory", "type"};
    if (st.st_uid != uid)
        return std::pair<std::string, std::string>{
            cat("is owned by ", user_name(st.st_uid), ", not by you (uid ", uid, ")"), "owner"};
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return std::pair<std::string, std::string>{
            (st.st_mode & S_IWOTH) != 0 ? "is writable by others" : "is writable by its group",
            "mode"};
    return std::nullopt;
}

[[noreturn]] void refuse(const fs::path& path, std::string_view what, const struct stat& st,
                         uid_t uid) {
    const auto p = classify(st, uid);
    const char* why = p->second == "type" ? "" : ", so others could put what you run there";
    fail("can't use ", what, " ", path.string(), ": it ", p->first, why, " (",
         fix_for(p->second, path), ")");
}

// Create dir (mode 0700, whatever the umask) if missing, then check it.
void make_trusted(const fs::path& dir, uid_t uid, std::string_view what) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        throw_errno("can't create ", what, " ", dir.string());
    if (!check_trusted(dir, uid, what))
        fail("can't create ", what, " ", dir.string(), ": removed while being created");
}

} // namespace

std::optional<std::string> trust_problem(const struct stat& st, uid_t uid) {
    if (auto p = classify(st, uid))
        return p->first;
    return std::nullopt;
}

bool check_trusted(const fs::path& path, uid_t uid, std::string_view what) {
    struct stat st {};

    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT)
            return false;
        throw_errno("can't use ", what, " ", path.string());
    }
    if (classify(st, uid))
        refuse(path, what, st, uid);
    return true;
}

std::optional<fs::path> find_image(const fs::path& storage, std::string_view ref) {
    if (!is_image_name(ref))
        return std::nullopt;
    const uid_t uid = ::geteuid();
    if (!check_trusted(storage, uid, "storage directory"))
        return std::nullopt;
    const fs::path img = images_dir(storage);
    if (!check_trusted(img, uid, "storage directory"))
        return std::nullopt;
    const fs::path dir = img / ref_to_dirname(ref);

    struct stat st {};

    if (::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        return dir;
    return std::nullopt;
}

fs::path prepare_images_dir(const fs::path& storage) {
    const uid_t uid = ::geteuid();
    make_trusted(storage, uid, "storage directory");
    const fs::path img = images_dir(storage);
    make_trusted(img, uid, "storage directory");
    return img;
}

fs::path prepare_mount_dir(const fs::path& storage) {
    const uid_t uid = ::geteuid();
    make_trusted(storage, uid, "storage directory");
    const fs::path mnt = mount_dir(storage);
    make_trusted(mnt, uid, "storage directory");
    return mnt;
}

Fd open_trusted_dir(int dirfd, const fs::path& name, const fs::path& shown, uid_t uid) {
    // O_NOFOLLOW with O_PATH opens a symlink itself, which fstat then reports.
    Fd fd = try_open_at(dirfd, name, O_PATH | O_NOFOLLOW);
    if (!fd)
        throw_errno("can't use storage directory ", shown.string());

    struct stat st {};

    if (::fstat(fd.get(), &st) != 0)
        throw_errno("can't use storage directory ", shown.string());
    if (classify(st, uid))
        refuse(shown, "storage directory", st, uid);
    return fd;
}

} // namespace ch::storage

// fromhost.cc: see fromhost.hh.
#include "fromhost/fromhost.hh"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image/elf.hh"
#include "util/child.hh"
#include "util/error.hh"
#include "util/fd.hh"
#include "util/log.hh"

namespace ch::fromhost {

namespace {

constexpr std::size_t max_output = 16 << 20; // of a --cmd or ldconfig -p
constexpr std::size_t max_list = 16 << 20;   // of a --file LIST

std::string base_name(const std::string& p) {
    const auto slash = p.rfind('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Runs argv with stdout into a pipe; returns what it printed and its
// wait status. stderr stays the user's, so the command's own complaints show.
std::string capture(const std::vector<std::string>& argv, int& status) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw_errno("can't make a pipe for ", argv[0]);
    Fd rd(fds[0]), wr(fds[1]);
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0)
        throw_errno("can't fork to run ", argv[0]);
    if (pid == 0) {
        if (::dup2(wr.get(), STDOUT_FILENO) >= 0)
            ::execvp(args[0], args.data());
        _exit(127);
    }
    wr.reset();
    std::string out;
    try {
        out = read_all(rd.get(), cat("the output of ", argv[0]), max_output);
    } catch (...) {
        rd.reset();
        ::waitpid(pid, &status, 0);
        throw;
    }
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            throw_errno("can't wait for ", argv[0]);
    return out;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    for (auto l : split(text, '\n')) {
        while (!l.empty() && (l.back() == ' ' || l.back() == '\t' || l.back() == '\r'))
            l.pop_back();
        const auto start = l.find_first_not_of(" \t");
        if (start == std::string::npos || l[start] == '#')
            continue;
        out.push_back(l.substr(start));
    }
    return out;
}

bool in_path(const std::string& name, std::string& found) {
    const char* path = std::getenv("PATH");
    for (const auto& d : split(path ? path : "/usr/bin:/bin", ':')) {
        if (d.empty())
            continue;
        const std::string p = d + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) {
            found = p;
            return true;
        }
    }
    return false;
}

} // namespace

bool is_shared_lib_name(std::string_view name) {
    const auto at = name.find(".so");
    if (at == std::string_view::npos || at == 0)
        return false;
    for (auto pos = at; pos != std::string_view::npos; pos = name.find(".so", pos + 1))
        if (pos + 3 == name.size() || name[pos + 3] == '.')
            return true;
    return false;
}

std::vector<Placement> place(const std::vector<Item>& items, const std::string& lib_dir) {
    std::vector<Placement> out;
    std::map<std::string, std::string> taken; // destination -> source
    for (const auto& it : items) {
        const std::string src = it.src.string();
        if (src.empty() || src[0] != '/')
            fail("can't inject ", quote_name(src), " (from ", it.from,
                 "): host paths must be absolute");
        if (it.dest && (it.dest->empty() || (*it.dest)[0] != '/'))
            fail("can't inject ", src,
                 ": --dest must be an absolute path in the image: ", quote_name(*it.dest));
        Placement p;
        p.src = src;
        p.name = base_name(normalize_abs(src));
        p.library = is_shared_lib_name(p.name);
        if (p.name.empty())
            fail("can't inject ", src, ": not a file");
        if (it.dest)
            p.dir = normalize_abs(*it.dest);
        else if (p.library)
            p.dir = lib_dir;
        else
            p.dir = normalize_abs(src.substr(0, src.rfind('/') + 1));
        const std::string dst = normalize_abs(p.dir + "/" + p.name);
        const auto [at, fresh] = taken.emplace(dst, src);
        if (!fresh) {
            if (at->second == src)
                continue; // named twice: copied once
            fail("can't inject both ", at->second, " and ", src, ": both would be ", dst,
                 " in the image");
        }
        out.push_back(std::move(p));
    }
    return out;
}

namespace {

// The copy in progress, undone by its destructor unless committed.
class Staging {
public:
    explicit Staging(int rootfd, std::string image)
        : rootfd_(rootfd)
        , image_(std::move(image)) {}

    Staging(const Staging&) = delete;
    Staging& operator=(const Staging&) = delete;

    ~Staging() {
        for (auto it = staged_.rbegin(); it != staged_.rend(); ++it)
            ::unlinkat(it->dir->get(), it->tmp.c_str(), 0);
        for (auto it = made_dirs_.rbegin(); it != made_dirs_.rend(); ++it)
            ::unlinkat(it->first->get(), it->second.c_str(), AT_REMOVEDIR);
    }

    // The directory dir in the image, made (0755) where missing; made ones
    // are recorded for removal.
    std::shared_ptr<Fd> dir(const std::string& dir) {
        if (auto it = dirs_.find(dir); it != dirs_.end())
            return it->second;
        Fd fd = resolve_in_root(rootfd_, dir);
        if (!fd) {
            if (errno != ENOENT)
                throw_errno("can't open ", dir, " in image ", image_);
            const auto slash = dir.rfind('/');
            const std::string parent_path = slash == 0 ? "/" : dir.substr(0, slash);
            const std::string name = dir.substr(slash + 1);
            auto parent = this->dir(parent_path);
            if (::mkdirat(parent->get(), name.c_str(), 0755) != 0)
                throw_errno("can't create ", dir, " in image ", image_);
            made_dirs_.emplace_back(parent, name);
            fd = resolve_in_root(rootfd_, dir);
            if (!fd)
                throw_errno("can't open ", dir, " in image ", image_);
        }

        struct stat st {};

        if (::fstat(fd.get(), &st) != 0 || !S_ISDIR(st.st_mode))
            fail("can't copy into ", dir, " in image ", image_, ": not a directory");
        return dirs_[dir] = std::make_shared<Fd>(std::move(fd));
    }

    void stage(const Placement& p) {
        const std::string dst = normalize_abs(p.dir + "/" + p.name);
        const std::string what =
            cat("can't copy ", p.src.string(), " to ", dst, " in image ", image_);
        const Fd src = try_open_at(AT_FDCWD, p.src, O_RDONLY | O_NONBLOCK | O_NOCTTY);
        if (!src)
            throw_errno(what);

        struct stat st {};

        if (::fstat(src.get(), &st) != 0)
            throw_errno(what);
        if (!S_ISREG(st.st_mode))
            fail(what, ": not a regular file");
        auto dirfd = dir(p.dir);

        struct stat old {};

        if (::fstatat(dirfd->get(), p.name.c_str(), &old, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISDIR(old.st_mode))
            fail(what, ": a directory is there");
        const std::string tmp = cat(".ch-fromhost.", ::getpid(), ".", staged_.size());
        // Not setuid or setgid, whatever the host file is: the image is the user's.
        const Fd out =
            open_at(dirfd->get(), tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, st.st_mode & 0777);
        staged_.push_back({dirfd, tmp, p.name});
        char buf[1 << 16];
        for (;;) {
            const ssize_t n = ::read(src.get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw_errno(what, ": reading");
            if (n == 0)
                break;
            write_all(out.get(), std::string_view(buf, static_cast<std::size_t>(n)), dst);
        }
        if (::fchmod(out.get(), st.st_mode & 0777) != 0)
            throw_errno(what);
        log::verbose(p.src.string(), " -> ", dst);
    }

    // Every file is written: rename them into place. A rename within one
    // directory fails only if the filesystem breaks; files already renamed
    // then stay, and the message says which.
    void commit() {
        for (std::size_t i = 0; i < staged_.size(); i++) {
            const auto& s = staged_[i];
            if (::renameat(s.dir->get(), s.tmp.c_str(), s.dir->get(), s.name.c_str()) != 0) {
                const int err = errno;
                staged_.erase(staged_.begin(), staged_.begin() + static_cast<long>(i));
                made_dirs_.clear();
                throw SysError(err, cat("can't rename ", s.name, " into place in image ", image_,
                                        " (", i, " files already copied)"));
            }
        }
        staged_.clear();
        made_dirs_.clear();
    }

    std::size_t count() const { return staged_.size(); }

private:
    struct Staged {
        std::shared_ptr<Fd> dir;
        std::string tmp, name;
    };

    int rootfd_;
    std::string image_;
    std::map<std::string, std::shared_ptr<Fd>> dirs_;
    std::vector<std::pair<std::shared_ptr<Fd>, std::string>> made_dirs_;
    std::vector<Staged> staged_;
};

} // namespace

std::size_t copy_into(int rootfd, const fs::path& image, const std::vector<Placement>& files) {
    Staging st(rootfd, image.string());
    for (const auto& p : files)
        st.stage(p);
    const std::size_t n = st.count();
    st.commit();
    return n;
}

std::vector<std::string> command_lines(const std::string& cmd) {
    int status = 0;
    const std::string out = capture({"/bin/sh", "-c", cmd}, status);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("can't inject the files of --cmd ", quote_name(cmd), ": it exited with status ",
             shell_status(status));
    return lines_of(out);
}

std::vector<std::string> file_lines(const fs::path& list) {
    const Fd fd = try_open_at(AT_FDCWD, list, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (!fd)
        throw_errno("can't read --file ", list.string());

    struct stat st {};

    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
        fail("can't read --file ", list.string(), ": not a regular file");
    return lines_of(read_all(fd.get(), list.string(), max_list));
}

namespace {

// The driver's user-space libraries (the names nvidia-container-cli's
// "utility", "compute", "video", "graphics" and "display" sets list) and tools.
const char* const nvidia_libs[] = {
    "libcuda",
    "libcudadebugger",
    "libnvidia-ml",
    "libnvidia-cfg",
    "libnvidia-nvvm",
    "libnvidia-ptxjitcompiler",
    "libnvidia-opencl",
    "libnvidia-gpucomp",
    "libnvidia-allocator",
    "libnvidia-compiler",
    "libnvidia-fatbinaryloader",
    "libnvidia-opticalflow",
    "libnvidia-encode",
    "libnvcuvid",
    "libvdpau_nvidia",
    "libnvidia-eglcore",
    "libnvidia-glcore",
    "libnvidia-tls",
    "libnvidia-glsi",
    "libnvidia-fbc",
    "libnvidia-ifr",
    "libnvidia-rtcore",
    "libnvoptix",
    "libGLX_nvidia",
    "libEGL_nvidia",
    "libGLESv2_nvidia",
    "libGLESv1_CM_nvidia",
    "libnvidia-glvkspirv",
    "libnvidia-cbl",
    "libnvidia-egl-wayland",
    "libnvidia-pkcs11",
};
const char* const nvidia_tools[] = {
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
};

std::uint16_t own_machine() {
    const Fd self = open_at(AT_FDCWD, "/proc/self/exe", O_RDONLY);
    const auto e = image::read_elf(self.get(), "/proc/self/exe");
    return e ? e->machine : 0;
}

bool same_machine(const std::string& path, std::uint16_t machine) {
    const Fd fd = try_open_at(AT_FDCWD, path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (!fd)
        return false;
    try {
        const auto e = image::read_elf(fd.get(), path);
        return e && e->is64 == (sizeof(void*) == 8) && e->machine == machine;
    } catch (const Error&) {
        return false;
    }
}

std::vector<std::string> nvidia_from_ldconfig(std::string& why_none) {
    std::string ldconfig = "/sbin/ldconfig";
    if (::access(ldconfig.c_str(), X_OK) != 0 && !in_path("ldconfig", ldconfig)) {
        why_none = "ldconfig not found";
        return {};
    }
    int status = 0;
    const std::string out = capture({ldconfig, "-p"}, status);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        why_none = cat(ldconfig, " -p exited with status ", shell_status(status));
        return {};
    }
    const std::uint16_t machine = own_machine();
    std::vector<std::string> libs;
    std::set<std::string> seen;
    // "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1"
    for (const auto& line : lines_of(out)) {
        const auto arrow = line.find(" => ");
        if (arrow == std::string::npos)
            continue;
        const std::string key = line.substr(0, line.find(' '));
        const std::string path = line.substr(arrow + 4);
        const std::string stem = key.substr(0, key.find(".so"));
        const bool known = std::any_of(std::begin(nvidia_libs), std::end(nvidia_libs),
                                       [&](const char* n) { return stem == n; });
        if (known && same_machine(path, machine) && seen.insert(path).second)
            libs.push_back(path);
    }
    if (libs.empty())
        why_none = "ldconfig -p lists none of the driver's libraries (libcuda.so, "
                   "libnvidia-ml.so, ...)";
    return libs;
}

} // namespace

std::vector<std::string> nvidia_files() {
    std::string cli;
    std::string why_cli = "nvidia-container-cli is not installed";
    if (in_path("nvidia-container-cli", cli)) {
        int status = 0;
        const std::string out = capture({cli, "list", "--binaries", "--libraries"}, status);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !lines_of(out).empty())
            return lines_of(out);
        why_cli = cat(cli, " list found nothing (status ", shell_status(status), ")");
    }
    std::string why_ldconfig;
    std::vector<std::string> files = nvidia_from_ldconfig(why_ldconfig);
    if (files.empty())
        throw Error(cat("--nvidia: no NVIDIA driver libraries on this host: ", why_cli, ", and ",
                        why_ldconfig),
                    static_cast<Exit>(no_nvidia_exit));
    for (const char* t : nvidia_tools) {
        std::string found;
        if (in_path(t, found))
            files.push_back(found);
    }
    return files;
}

std::optional<std::string> image_ldconfig(int rootfd) {
    for (const char* p :
         {"/sbin/ldconfig", "/usr/sbin/ldconfig", "/bin/ldconfig", "/usr/bin/ldconfig"}) {
        const Fd fd = resolve_in_root(rootfd, p);

        struct stat st {};

        if (fd && ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
            return p;
    }
    return std::nullopt;
}

void run_ldconfig(const fs::path& ch_run, const fs::path& image, const std::string& ldconfig,
                  int verbose) {
    std::vector<std::string> argv = {ch_run.string(), "-w", "--no-passwd"};
    for (int i = 0; i < verbose; i++)
        argv.push_back("-v");
    argv.insert(argv.end(), {image.string(), "--", ldconfig});
    log::verbose("running: ", join(argv, " "));
    int status = 0;
    capture(argv, status);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("can't run ", ldconfig, " in image ", image.string(), ": ch-run exited with status ",
             shell_status(status), " (the files are copied; to retry: ch-run -w ", image.string(),
             " -- ", ldconfig, ")");
}

} // namespace ch::fromhost

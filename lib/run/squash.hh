// squash.hh: the process that serves a SquashFS image over FUSE for one
// container ("the server"), and how ch-run hands it the mounted /dev/fuse.
//
// Why a separate process, started this way:
//  - ch-run must stay single-threaded to unshare(CLONE_NEWUSER), and the
//    server runs several threads, so it can't be ch-run itself;
//  - it is forked BEFORE unshare, so it holds nothing of the container's
//    namespaces and does not keep them alive: when the container's last
//    process exits, the kernel drops the mount namespace and the mount, the
//    FUSE connection ends, and the server exits;
//  - a double fork makes it nobody's child: not of the user's command (which
//    ch-run becomes, and which must not find a stray child), nor a zombie.
#pragma once

#include <filesystem>
#include <utility>

#include <sys/types.h>

#include "image/squash_serve.hh"
#include "util/fd.hh"

namespace ch::run {

namespace fs = std::filesystem;

// The process name of the server (prctl PR_SET_NAME), for ps and pgrep.
constexpr const char* squash_server_name = "ch-squashfuse";

class SquashServer {
public:
    // Start the server for file, which owns every file as uid:gid (ids inside
    // the container). It ignores the signals a terminal or a batch system
    // sends to a whole process group or job (the command decides what to do
    // about them; the server goes when the command and its children are
    // gone), keeps no descriptor of ch-run's but its socket and the image,
    // and waits for the /dev/fuse descriptor. If ch-run dies first, the
    // server sees the socket close and exits. command and path: the
    // container's first program and its PATH, whose loader and libraries the
    // server inflates ahead (image::ServeOptions). Throws Error
    // (Exit::squash).
    static SquashServer start(image::SquashFile& file, uid_t uid, gid_t gid,
                              const std::string& command = {}, const std::string& path = {});

    // Send fuse_dev (opened and mounted in the container's namespaces) to
    // the server and wait until it answers requests. Before this returns,
    // nothing may touch the mount: the first access waits for the server's
    // answer to FUSE_INIT. Throws Error (Exit::squash).
    void hand_over(Fd fuse_dev);

    SquashServer(SquashServer&& o) noexcept
        : sock_(std::move(o.sock_))
        , image_(std::move(o.image_))
        , helper_(std::exchange(o.helper_, -1)) {}

    SquashServer& operator=(SquashServer&&) = delete;

    ~SquashServer() { reap_helper(); }

private:
    SquashServer(Fd sock, fs::path image, pid_t helper)
        : sock_(std::move(sock))
        , image_(std::move(image))
        , helper_(helper) {}

    // The child that forks the server and exits, waited for here rather than
    // in start(): ch-run builds the container meanwhile (that fork copies
    // ch-run, and on a busy node the child may wait for a CPU). Reaped before
    // ch-run becomes the command, whose child it must not be. True if it
    // forked the server.
    bool reap_helper() noexcept;

    Fd sock_;
    fs::path image_;
    pid_t helper_ = -1;
};

} // namespace ch::run

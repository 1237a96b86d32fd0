// fromhost.hh: ch-fromhost, host files copied into a directory image.
//
// Libraries go to the image's library directory (image/ldso.hh: its own
// ld.so.conf, read inside the image root), other files to --dest or the path
// they have on the host. The copy is all or nothing: every file is written
// under a temporary name beside its destination first, and only when all are
// written are they renamed into place; a failure removes the temporaries and
// the directories the copy made. Then the image's ldconfig runs inside the
// image, through ch-run -w.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ch::fromhost {

namespace fs = std::filesystem;

// One host file as the user named it, with the --dest in force then.
struct Item {
    fs::path src;
    std::optional<std::string> dest; // directory in the image
    std::string from;                // "--path", "--cmd 'CMD'", "--file LIST", "--nvidia"
};

// Where one file goes: dir (absolute, in the image) and name.
struct Placement {
    fs::path src;
    std::string dir;
    std::string name;
    bool library = false;
};

// Named like a shared library: NAME.so or NAME.so.VERSION (Charliecloud's rule).
bool is_shared_lib_name(std::string_view name);

// Pure: each item's destination. --dest wins; else libraries go to lib_dir
// and other files to their own path. Throws Error for a relative source or
// --dest, and for two files with one destination.
std::vector<Placement> place(const std::vector<Item>& items, const std::string& lib_dir);

// Copies every placement into the image at rootfd (image names it in
// messages), or nothing (see above). Returns how many were copied.
std::size_t copy_into(int rootfd, const fs::path& image, const std::vector<Placement>& files);

// The files a command prints, one per line (/bin/sh -c CMD); it must exit 0.
std::vector<std::string> command_lines(const std::string& cmd);
// The files a list names, one per line; blank lines and "#" comments skipped.
std::vector<std::string> file_lines(const fs::path& list);

// The host's NVIDIA user-space driver files: nvidia-container-cli's list
// when it is installed and works, else libraries from `ldconfig -p` whose
// names are the driver's (and this host's machine), with the driver's tools
// found in $PATH. Throws Error with exit code 1 when there are none.
std::vector<std::string> nvidia_files();
constexpr int no_nvidia_exit = 1;

// The image's ldconfig (/sbin, /usr/sbin, /bin or /usr/bin), if it has one.
std::optional<std::string> image_ldconfig(int rootfd);

// Runs ldconfig in the image through ch_run -w; throws Error when it fails.
void run_ldconfig(const fs::path& ch_run, const fs::path& image, const std::string& ldconfig,
                  int verbose);

} // namespace ch::fromhost

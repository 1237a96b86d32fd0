// publish.hh: outputs appear atomically. Work is written to a staging path
// beside the destination (same filesystem) and renamed into place at the end;
// the staging path is removed if the work fails. A killed process can't clean
// up, so each staging path is held under an flock while in use, and
// sweep_staging() removes those whose owner is gone.
//
// Staging paths sit in directories other users may write (/tmp, /var/tmp,
// a shared project directory), so the sweep trusts nothing it finds there:
// it removes only what the invoking user owns, and changes modes only
// through descriptors opened without following symlinks.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "util/fd.hh"

namespace ch::storage {

namespace fs = std::filesystem;

enum class StagedKind { file, dir };

class Staged {
public:
    // Sweeps dead staging debris beside dest, then creates the staging file
    // or directory (staging_name()).
    Staged(const fs::path& dest, StagedKind kind);
    Staged(const Staged&) = delete;
    Staged& operator=(const Staged&) = delete;
    ~Staged(); // removes the staging path unless published

    const fs::path& path() const { return staging_; }

    const fs::path& dest() const { return dest_; }

    // Rename into place, replacing dest (for a directory: atomically swapped
    // in, then the old one removed). The caller decides whether replacing is
    // allowed.
    void publish();

private:
    fs::path dest_;
    fs::path staging_;
    StagedKind kind_;
    Fd lock_;
    bool published_ = false;
};

// ".NAME.ch-staging.PID.SERIAL": hidden, and recognisably ours.
std::string staging_name(std::string_view dest_name, pid_t pid, unsigned serial);
// Whether a directory entry's name is one that staging_name() makes.
bool is_staging_name(std::string_view name);

// Called between the sweep's steps with the step and the entry's name:
// "open" before a staging entry is opened, "remove" once it is known to be
// the invoking user's, unlocked, and about to be removed, and "open-dir"
// before each directory inside it is opened. Tests use it to swap things
// at the worst moment.
using SweepHook = std::function<void(std::string_view step, const std::string& name)>;

// Remove staging debris in dir whose owner no longer holds its lock. Skips
// entries not owned by the effective uid (even as root: another user's
// staging directory is not ours to remove), symlinks, and anything that is
// neither a regular file nor a directory. Never fails: what can't be removed
// is left with a warning.
void sweep_staging(const fs::path& dir, const SweepHook& hook = {});

} // namespace ch::storage

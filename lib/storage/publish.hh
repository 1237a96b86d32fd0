// publish.hh: outputs appear atomically. Work is written to a staging path
// beside the destination (same filesystem) and renamed into place at the end;
// the staging path is removed if the work fails. A killed process can't clean
// up, so each staging path is held under an flock while in use, and
// sweep_staging() removes those whose owner is gone.
#pragma once

#include <filesystem>
#include <string>

#include "util/fd.hh"

namespace ch::storage {

namespace fs = std::filesystem;

enum class StagedKind { file, dir };

class Staged {
public:
    // Sweeps dead staging debris beside dest, then creates the staging file
    // or directory (".NAME.ch-staging.PID.N").
    Staged(const fs::path& dest, StagedKind kind);
    Staged(const Staged&) = delete;
    Staged& operator=(const Staged&) = delete;
    ~Staged(); // removes the staging path unless published

    const fs::path& path() const { return staging_; }
    const fs::path& dest() const { return dest_; }
    // Rename into place, replacing dest (for a directory: atomically swapped
    // in, then the old one removed). The caller decides whether replacing is
    // allowed (see may_replace).
    void publish();

private:
    fs::path dest_;
    fs::path staging_;
    StagedKind kind_;
    Fd lock_;
    bool published_ = false;
};

// Remove staging debris in dir whose owner no longer holds its lock.
void sweep_staging(const fs::path& dir);

// Whether an existing dest may be replaced: a missing path, an empty
// directory, a directory that looks like an image (has bin/, dev/ and usr/,
// or etc/ and ch/), or a file that is a SquashFS or tar archive. Returns an
// empty string if yes, else the reason why not.
std::string why_not_replace(const fs::path& dest);

} // namespace ch::storage

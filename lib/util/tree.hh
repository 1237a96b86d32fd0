// tree.hh: removing a directory tree safely: never follows symlinks, and
// makes directories user-writable on the way (images often hold read-only
// ones), so an unprivileged user can always delete what they unpacked.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace ch {

// The names in the directory open at dirfd (without "." and ".."), sorted
// bytewise so that every walk sees the same order. shown names it in errors.
std::vector<std::string> list_dir(int dirfd, const std::string& shown);

// Remove path and everything under it; a missing path is not an error.
// Throws SysError naming the entry that could not be removed.
void remove_tree(const std::filesystem::path& path);
// The same, relative to dirfd.
void remove_tree_at(int dirfd, const std::string& name);

} // namespace ch

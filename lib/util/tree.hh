// tree.hh: removing a directory tree safely. Never follows a symlink, and
// never changes a mode by name: a directory its owner can't enter (images
// often hold read-only ones) is opened without following links and made
// user-writable through that descriptor, so a symlink swapped in meanwhile
// can't redirect the change to someone else's file. Iterative, with one
// descriptor open at a time, so any depth is fine.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "util/fd.hh"

namespace ch {

// The names in the directory open at dirfd (without "." and ".."), sorted
// bytewise so that every walk sees the same order. shown names it in errors.
std::vector<std::string> list_dir(int dirfd, const std::string& shown);

// Called with the name of each directory just before it is opened for
// removal. Tests use it to swap in a symlink at the worst moment.
using TreeHook = std::function<void(const std::string& name)>;

// Remove path and everything under it; a missing path is not an error.
// Throws SysError naming the entry that could not be removed.
void remove_tree(const std::filesystem::path& path, const TreeHook& hook = {});
// The same, relative to dirfd.
void remove_tree_at(int dirfd, const std::string& name, const TreeHook& hook = {});
// Remove everything inside the directory open at dir (O_RDONLY), which
// stays. shown names it in errors.
void empty_dir(Fd dir, const std::string& shown, const TreeHook& hook = {});

// Open name under dirfd as a directory (O_RDONLY, never following a
// symlink) and make it u+rwx through the descriptor if it isn't. Returns an
// empty Fd (errno ENOTDIR) if name is not a directory. Throws SysError
// naming shown otherwise.
Fd open_dir_to_remove(int dirfd, const std::string& name, const std::string& shown);

} // namespace ch

// squash_io.hh: what the SquashFS source and sink share (private to
// lib/image): owning pointers for libsquashfs objects, an sqfs_file_t over
// one of our descriptors (O_CLOEXEC, and it remembers errno so messages can
// say "No space left on device" instead of "I/O error"), and libsquashfs
// error codes in words. Nothing here throws across a libsquashfs callback.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <sqfs/compressor.h>
#include <sqfs/error.h>
#include <sqfs/io.h>
#include <sqfs/predef.h>

namespace ch::image::squash {

namespace fs = std::filesystem;

// Every libsquashfs object is freed through its own destroy hook.
struct Destroy {
    void operator()(void* p) const noexcept { sqfs_destroy(p); }
};

template <typename T>
using Ptr = std::unique_ptr<T, Destroy>;

// Memory that libsquashfs hands out (inodes, directory entries, xattrs).
struct Free {
    void operator()(void* p) const noexcept { sqfs_free(p); }
};

template <typename T>
using Mem = std::unique_ptr<T, Free>;

// What an FdFile remembers of its first failed system call.
struct IoFault {
    int err = 0;    // errno, 0 if none
    std::string op; // "write", "read", "truncate"
    std::uint64_t offset = 0;
};

enum class Access { read, write };

// Open path as an sqfs_file_t. For Access::write the file must already exist
// (the Staged file) and is truncated. Throws SysError naming path.
Ptr<sqfs_file_t> open_file(const fs::path& path, Access access);
// The first fault an FdFile recorded, if any (f must come from open_file).
const IoFault& fault_of(const sqfs_file_t* f);

// A negative SQFS_ERROR in a few words ("out of memory", "corrupted data").
std::string error_words(int code);
// Same, but an I/O error says what the kernel said ("No space left on
// device"), taken from file's fault when it has one.
std::string error_words(int code, const sqfs_file_t* file);

// Create a compressor (or, with SQFS_COMP_FLAG_UNCOMPRESS in cfg, a
// decompressor). Returns the SQFS_ERROR code on failure, 0 on success.
//
// The compressor is wrapped so that a block whose "compressed" form is not
// smaller than the input is stored raw: libsquashfs 1.2's lz4 backend
// returns LZ4's output even when it grew (4 bytes of id table became 5),
// which unsquashfs and the kernel refuse as corruption.
//
// gzip is libdeflate's where it can be (see make_gzip_compressor).
int make_compressor(const sqfs_compressor_config_t& cfg, Ptr<sqfs_compressor_t>& out);

// gzip on libdeflate (squash_gzip.cc); make_compressor picks it for gzip.
// SQFS_ERROR_UNSUPPORTED for settings it doesn't cover (a window below
// 32 KiB or zlib strategies, when compressing), which libsquashfs's zlib
// backend then handles.
int make_gzip_compressor(const sqfs_compressor_config_t& cfg, sqfs_compressor_t** out);

// squash_compressor_name(id), or "unknown compressor ID" for messages.
std::string compressor_name(int id);

} // namespace ch::image::squash

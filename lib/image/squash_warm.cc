// squash_warm.cc: see squash_warm.hh.
#include "image/squash_warm.hh"

#include <algorithm>
#include <cstring>
#include <set>

#include "image/elf.hh"
#include "image/ldso.hh"
#include "util/strings.hh"

namespace ch::image::squash {

namespace {

// The image's loader cache is read whole to find the libraries; a larger one
// is not guessed at (a Debian image's is tens of KiB).
constexpr std::uint64_t warm_cache_max_bytes = 1 << 20;

// The regular file at path, or false.
bool find_file(const Image& img, Inflater& inf, std::string_view path, WarmFile& out) {
    Inode in;
    if (!img.resolve(path, inf, in) || !in.is_file())
        return false;
    out.path = std::string(path);
    out.size = in.size;
    out.layout = img.layout(in, inf);
    return true;
}

// Where execvp would find command.
bool find_program(const Image& img, Inflater& inf, std::string_view command, std::string_view path,
                  WarmFile& out) {
    if (command.empty())
        return false;
    if (command.find('/') != std::string_view::npos)
        return command.front() == '/' && find_file(img, inf, command, out);
    for (const std::string& dir : split(path, ':'))
        if (!dir.empty() && dir.front() == '/' && find_file(img, inf, cat(dir, "/", command), out))
            return true;
    return false;
}

// The libraries of needed that the loader would take from the cache in
// bytes (the first entry for each name with the program's flags).
void add_libraries(const Image& img, Inflater& inf, std::string_view bytes, std::int32_t flags,
                   const std::vector<std::string>& needed, std::vector<WarmFile>& files) {
    const std::vector<LdCacheRef> refs = parse_ld_cache_refs(bytes);
    for (const std::string& name : needed) {
        const auto it = std::find_if(refs.begin(), refs.end(), [&](const LdCacheRef& r) {
            return r.key == name && r.flags == flags && r.hwcap == 0;
        });
        WarmFile lib;
        if (it != refs.end() && find_file(img, inf, it->value, lib))
            files.push_back(std::move(lib));
    }
}

} // namespace

bool read_file_bytes(const WarmFile& f, std::uint32_t block_size, const WarmBlocks& blocks,
                     void* buf, std::size_t len, std::uint64_t off) {
    if (off > f.size || len > f.size - off)
        return false;
    std::vector<FileSpan> spans;
    try {
        file_spans(f.layout, f.size, block_size, off, len, spans);
    } catch (const Error&) {
        return false;
    }
    auto* out = static_cast<char*>(buf);
    for (const FileSpan& sp : spans) {
        if (sp.hole) {
            std::memset(out, 0, sp.len);
        } else {
            const std::shared_ptr<const Block> b = blocks(sp.key);
            if (!b || sp.at > b->size || sp.len > b->size - sp.at)
                return false;
            std::memcpy(out, b->data.get() + sp.at, sp.len);
        }
        out += sp.len;
    }
    return true;
}

std::vector<WarmFile> warm_files(const Image& img, Inflater& inf, const WarmBlocks& blocks,
                                 std::string_view command, std::string_view path) {
    std::vector<WarmFile> files;
    try {
        WarmFile program;
        if (!find_program(img, inf, command, path, program))
            return files;
        const std::uint32_t bs = img.block_size();
        const ElfRead read_program = [&](void* buf, std::size_t len, std::uint64_t off) {
            return read_file_bytes(program, bs, blocks, buf, len, off);
        };
        ElfDeps deps;
        const auto elf = read_elf(read_program, program.size, program.path, &deps);
        if (elf && deps.interp) {
            WarmFile interp;
            if (find_file(img, inf, *deps.interp, interp))
                files.push_back(std::move(interp));
        }
        WarmFile cache;
        try {
            if (elf && !deps.needed.empty() && find_file(img, inf, "/etc/ld.so.cache", cache) &&
                cache.size <= warm_cache_max_bytes) {
                std::string bytes(cache.size, '\0');
                if (read_file_bytes(cache, bs, blocks, bytes.data(), bytes.size(), 0))
                    add_libraries(img, inf, bytes, ld_cache_flags(*elf), deps.needed, files);
            }
        } catch (const Error&) {
            // A damaged cache (or library): the loader will say so.
        }
        files.push_back(std::move(program));
    } catch (const Error&) {
        // A damaged image or ELF file: what was found so far is the guess.
    }
    return files;
}

std::vector<BlockKey> warm_blocks(const std::vector<WarmFile>& files, std::uint32_t block_size) {
    std::vector<BlockKey> keys;
    std::set<BlockKey> seen;
    std::uint64_t total = 0;
    for (const WarmFile& f : files) {
        std::uint64_t taken = 0;
        for (std::size_t i = 0; i < f.layout.count(); i++) {
            if (taken + block_size > warm_file_max_bytes ||
                total + block_size > warm_total_max_bytes)
                break;
            taken += block_size;
            const BlockKey k = f.layout.block(i);
            // A hole, or the same file under two names.
            if (k.hdr == 0 || !seen.insert(k).second)
                continue;
            keys.push_back(k);
            total += block_size;
        }
    }
    return keys;
}

} // namespace ch::image::squash

/* mkfiles.c: deterministic file content for the benchmark fixture, for
 * test/bench/fixture.sh. Compiled by lib.sh at bench time; not installed.
 *
 *   mkfiles small DIR SEED COUNT MIN MAX   COUNT files of MIN..MAX bytes,
 *                                          100 a directory: DIR/sNNN/fNNNNN.EXT
 *   mkfiles large DIR SEED TOTAL MIN MAX   files of MIN..MAX bytes adding up
 *                                          to TOTAL bytes: DIR/lNNNN.EXT
 *   mkfiles big FILE SEED SIZE             one file of SIZE bytes that
 *                                          compresses only to about 3/4
 *
 * Every byte follows from SEED and the file's number, whatever else exists,
 * so two runs with the same arguments write the same tree. Content is a mix,
 * chosen per file, so the compressors see what images hold:
 *   text   (.txt, half the files) words from a vocabulary, in lines: about
 *          3x with gzip, like documentation and scripts;
 *   record (.dat, 30%) 16-byte records, 4 bytes random and 12 from a small
 *          table: about 2x, like object files and tables;
 *   random (.bin, 20%) random bytes: incompressible, like compressed data.
 * (Large files take the three kinds in turn.)
 * Modes are 0644 (every tenth text file 0755); mtimes are fixed.
 * Prints "FILES BYTES" written on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum kind { text, record, random_bytes, base64ish };

static const char* const kind_ext[] = {"txt", "dat", "bin", "dat"};

static unsigned long long files_written, bytes_written;

/* splitmix64: small, fast, and the same everywhere. */
static uint64_t next(uint64_t* s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t file_seed(uint64_t seed, uint64_t n, uint64_t salt) {
    uint64_t s = seed ^ (n * 0xd1342543de82ef95ULL) ^ salt;
    return next(&s);
}

static void die(const char* what, const char* path) {
    fprintf(stderr, "mkfiles: can't %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

/* The vocabulary: 4096 words of 2..10 letters, the same for every file. */
static char vocab[4096][12];

static void make_vocab(uint64_t seed) {
    uint64_t s = seed ^ 0x766f636162ULL;
    for (int i = 0; i < 4096; i++) {
        const int len = 2 + (int)(next(&s) % 9);
        for (int j = 0; j < len; j++)
            vocab[i][j] = (char)('a' + next(&s) % 26);
        vocab[i][len] = '\0';
    }
}

/* Fill buf[0..len) with content of kind k from state s. */
static void fill(char* buf, size_t len, enum kind k, uint64_t* s) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    switch (k) {
    case text:
        while (i < len) {
            const uint64_t r = next(s);
            /* A few words are common, as in real text. */
            const char* w = vocab[(r & 1) ? (r >> 8) % 64 : (r >> 8) % 4096];
            for (const char* p = w; *p != '\0' && i < len; p++)
                buf[i++] = *p;
            if (i < len)
                buf[i++] = (r >> 40) % 12 == 0 ? '\n' : ' ';
        }
        break;
    case record: {
        static const char table[12] = {0, 0, 0, 0, 1, 0, 0, 0, 0x40, 0x10, 0, 0};
        while (i < len) {
            uint64_t r = next(s);
            for (int j = 0; j < 16 && i < len; j++)
                buf[i++] = j < 4 ? (char)(r >> (8 * j)) : table[(j + (int)(r >> 60)) % 12];
        }
        break;
    }
    case random_bytes:
        while (i < len) {
            uint64_t r = next(s);
            for (int j = 0; j < 8 && i < len; j++, r >>= 8)
                buf[i++] = (char)r;
        }
        break;
    case base64ish:
        while (i < len) {
            uint64_t r = next(s);
            for (int j = 0; j < 10 && i < len; j++, r >>= 6)
                buf[i++] = b64[r & 63];
        }
        break;
    }
}

static void write_file(const char* path, size_t size, enum kind k, mode_t mode, uint64_t s) {
    static char buf[1 << 16];
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        die("create", path);
    for (size_t done = 0; done < size;) {
        const size_t n = size - done < sizeof buf ? size - done : sizeof buf;
        fill(buf, n, k, &s);
        for (size_t off = 0; off < n;) {
            const ssize_t w = write(fd, buf + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                die("write", path);
            off += (size_t)w;
        }
        done += n;
    }
    /* 2024-01-01 00:00:00 UTC, whatever the clock says. */
    const struct timespec times[2] = {{1704067200, 0}, {1704067200, 0}};
    if (fchmod(fd, mode) != 0 || futimens(fd, times) != 0)
        die("set mode and time of", path);
    if (close(fd) != 0)
        die("close", path);
    files_written++;
    bytes_written += size;
}

static enum kind pick_kind(uint64_t r) {
    const unsigned p = (unsigned)(r % 10);
    return p < 5 ? text : p < 8 ? record : random_bytes;
}

static unsigned long long parse(const char* s, const char* what) {
    char* end = NULL;
    errno = 0;
    const unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        fprintf(stderr, "mkfiles: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static void make_dir(const char* path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die("create directory", path);
}

int main(int argc, char** argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: mkfiles small DIR SEED COUNT MIN MAX\n"
                        "       mkfiles large DIR SEED TOTAL MIN MAX\n"
                        "       mkfiles big FILE SEED SIZE\n");
        return 2;
    }
    const char *mode = argv[1], *dir = argv[2];
    const uint64_t seed = parse(argv[3], "seed");
    char path[4096];
    make_vocab(seed);
    if (strcmp(mode, "big") == 0 && argc == 5) {
        write_file(dir, parse(argv[4], "size"), base64ish, 0644, file_seed(seed, 0, 0x626967));
    } else if ((strcmp(mode, "small") == 0 || strcmp(mode, "large") == 0) && argc == 7) {
        const int small = mode[0] == 's';
        const unsigned long long amount = parse(argv[4], small ? "count" : "total");
        const unsigned long long lo = parse(argv[5], "minimum size"),
                                 hi = parse(argv[6], "maximum size");
        if (lo == 0 || hi < lo) {
            fprintf(stderr, "mkfiles: bad size range %llu..%llu\n", lo, hi);
            return 2;
        }
        make_dir(dir);
        unsigned long long left = amount;
        for (uint64_t n = 0; small ? n < amount : left > 0; n++) {
            uint64_t s = file_seed(seed, n, small ? 0x736d616c6cULL : 0x6c61726765ULL);
            unsigned long long size = lo + next(&s) % (hi - lo + 1);
            /* Few large files: take the kinds in turn rather than by chance. */
            const enum kind k = small ? pick_kind(next(&s)) : (enum kind)(n % 3);
            const mode_t m = k == text && n % 10 == 0 ? 0755 : 0644;
            if (small) {
                snprintf(path, sizeof path, "%s/s%03llu", dir, (unsigned long long)(n / 100));
                if (n % 100 == 0)
                    make_dir(path);
                snprintf(path, sizeof path, "%s/s%03llu/f%05llu.%s", dir,
                         (unsigned long long)(n / 100), (unsigned long long)n, kind_ext[k]);
            } else {
                if (size > left || left - size < lo)
                    size = left; /* the last file takes the rest */
                left -= size;
                snprintf(path, sizeof path, "%s/l%04llu.%s", dir, (unsigned long long)n,
                         kind_ext[k]);
            }
            write_file(path, (size_t)size, k, m, s);
        }
    } else {
        fprintf(stderr, "mkfiles: bad arguments (see the comment at the top of mkfiles.c)\n");
        return 2;
    }
    printf("%llu %llu\n", files_written, bytes_written);
    return 0;
}

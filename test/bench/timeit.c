/* timeit.c: run several commands round-robin and time every run, for
 * test/bench. Compiled by lib.sh at bench time; not installed.
 *
 *   timeit ROUNDS WARMUP -- NAME CMD [ARG...] [:: NAME CMD [ARG...]]...
 *
 * Runs WARMUP rounds, then ROUNDS rounds, each round starting every command
 * once in the order given (A B C A B C ...), so drift in the machine's load
 * hits all commands alike. A run's wall time is CLOCK_MONOTONIC from just
 * before posix_spawn to just after wait4 returns; the spawn overhead is the
 * same for every command and cancels in differences. The children's stdout
 * and stderr go to /dev/null; stdin is /dev/null too.
 *
 * Prints one line per measured run (warm-up runs are not printed):
 *   NAME ROUND WALL_NS UTIME_US STIME_US MAXRSS_KB
 * separated by tabs. Exits 1, naming the command, at the first run that does
 * not exit 0; 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct command {
    const char *name;
    char **argv; /* NULL-terminated, points into main's argv */
};

static long parse_count(const char *s, const char *what) {
    char *end = NULL;
    errno = 0;
    const long n = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || n < 0 || n > 1000000) {
        fprintf(stderr, "timeit: bad %s: %s\n", what, s);
        exit(2);
    }
    return n;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void describe_status(int status, char *buf, size_t len) {
    if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "wait status %#x", (unsigned)status);
}

/* Run one command to completion; print its line if round >= 0. */
static int run_one(const struct command *c, long round, const posix_spawn_file_actions_t *fa) {
    pid_t pid;
    int status = 0;
    struct rusage ru;
    const long long t0 = now_ns();
    const int err = posix_spawnp(&pid, c->argv[0], fa, NULL, c->argv, environ);
    if (err != 0) {
        fprintf(stderr, "timeit: can't start %s (%s): %s\n", c->name, c->argv[0], strerror(err));
        return -1;
    }
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("timeit: can't wait");
            return -1;
        }
    }
    const long long t1 = now_ns();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char what[64];
        describe_status(status, what, sizeof what);
        fprintf(stderr, "timeit: %s (%s) failed with %s\n", c->name, c->argv[0], what);
        return -1;
    }
    if (round >= 0)
        printf("%s\t%ld\t%lld\t%ld\t%ld\t%ld\n", c->name, round, t1 - t0,
               (long)ru.ru_utime.tv_sec * 1000000L + (long)ru.ru_utime.tv_usec,
               (long)ru.ru_stime.tv_sec * 1000000L + (long)ru.ru_stime.tv_usec, ru.ru_maxrss);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 6 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: timeit ROUNDS WARMUP -- NAME CMD [ARG...] [:: NAME CMD [ARG...]]...\n");
        return 2;
    }
    const long rounds = parse_count(argv[1], "round count");
    const long warmup = parse_count(argv[2], "warm-up count");

    /* Split the rest at "::" in place: each separator becomes a NULL that
     * ends the previous command's argv. */
    struct command cmds[16];
    int ncmd = 0;
    for (int i = 4; i < argc;) {
        if (ncmd == 16 || i + 1 >= argc || strcmp(argv[i + 1], "::") == 0) {
            fprintf(stderr, "timeit: each command needs a NAME and a CMD (at most 16)\n");
            return 2;
        }
        cmds[ncmd].name = argv[i];
        cmds[ncmd].argv = &argv[i + 1];
        int j = i + 1;
        while (j < argc && strcmp(argv[j], "::") != 0)
            j++;
        if (j < argc)
            argv[j] = NULL; /* argv[argc] is already NULL */
        ncmd++;
        i = j + 1;
    }

    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0 ||
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0) != 0 ||
        posix_spawn_file_actions_adddup2(&fa, 1, 2) != 0) {
        fprintf(stderr, "timeit: can't set up file actions\n");
        return 2;
    }
    for (long r = -warmup; r < rounds; r++)
        for (int k = 0; k < ncmd; k++)
            if (run_one(&cmds[k], r < 0 ? -1 : r, &fa) != 0)
                return 1;
    if (fflush(stdout) != 0) {
        perror("timeit: can't write results");
        return 1;
    }
    return 0;
}

/* timeit.c: run several commands round-robin and time every run, for
 * test/bench. Compiled by lib.sh at bench time; not installed.
 *
 *   timeit ROUNDS WARMUP [-b SHELL-CMD] -- NAME CMD [ARG...] [:: NAME CMD [ARG...]]...
 *
 * Runs WARMUP rounds, then ROUNDS rounds, each round starting every command
 * once, in the order given and then the reverse (A B C, C B A, A B C, ...),
 * so drift in the machine's load hits all commands alike, and each follows
 * the others as often as they follow it: what a run leaves the kernel to do
 * after it (a FUSE mount's teardown, freed page cache) slows whatever runs
 * next. On a node with both CPUs busy, our ch-run IMG.sqfs took 5% longer
 * right after Charliecloud's than right after itself, and Charliecloud's 1%
 * longer after ours than after itself: in a fixed order, whoever always
 * came second paid for the other.
 *
 * A run's wall time is CLOCK_MONOTONIC from just before posix_spawn to just
 * after wait4 returns; the spawn overhead is the same for every command and
 * cancels in differences. The children's stdout and stderr go to /dev/null;
 * stdin is /dev/null too.
 *
 * With -b, `/bin/sh -c SHELL-CMD` runs before every run, untimed, and must
 * exit 0: for example to remove what the previous run wrote.
 *
 * timeit is a child subreaper (PR_SET_CHILD_SUBREAPER): a process that a run
 * leaves behind, such as a FUSE server that double-forked to be nobody's
 * child, becomes timeit's when its parent exits. After each run timeit reaps
 * them all before the next run starts (giving up after 10 s), so one run's
 * teardown never overlaps the next, and its CPU time counts: UTIME and STIME
 * are those of every process of the run (getrusage RUSAGE_CHILDREN before
 * and after), not only the command's. The wall time still ends when the
 * command exits, and MAXRSS is the command's own (wait4's, what
 * /usr/bin/time -f %M prints).
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
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

struct command {
    const char* name;
    char** argv; /* NULL-terminated, points into main's argv */
};

static long parse_count(const char* s, const char* what) {
    char* end = NULL;
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

static void describe_status(int status, char* buf, size_t len) {
    if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "wait status %#x", (unsigned)status);
}

static long usec(struct timeval tv) {
    return (long)tv.tv_sec * 1000000L + (long)tv.tv_usec;
}

/* Reap whatever processes the last run left to us, waiting up to 10 s. */
static void reap_leftovers(const char* name) {
    const long long give_up = now_ns() + 10000000000LL;
    while (1) {
        const pid_t p = waitpid(-1, NULL, WNOHANG);
        if (p > 0)
            continue;
        if (p < 0 && errno == EINTR)
            continue;
        if (p < 0) /* ECHILD: none left */
            return;
        if (now_ns() > give_up) {
            fprintf(stderr, "timeit: processes left by %s still run after 10 s; not waiting\n",
                    name);
            return;
        }
        const struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

/* Run one command to completion; print its line if round >= 0. */
static int run_one(const struct command* c, long round, const posix_spawn_file_actions_t* fa) {
    pid_t pid;
    int status = 0;
    struct rusage ru, before, after;
    getrusage(RUSAGE_CHILDREN, &before);
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
    reap_leftovers(c->name);
    getrusage(RUSAGE_CHILDREN, &after);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char what[64];
        describe_status(status, what, sizeof what);
        fprintf(stderr, "timeit: %s (%s) failed with %s\n", c->name, c->argv[0], what);
        return -1;
    }
    if (round >= 0)
        printf("%s\t%ld\t%lld\t%ld\t%ld\t%ld\n", c->name, round, t1 - t0,
               usec(after.ru_utime) - usec(before.ru_utime),
               usec(after.ru_stime) - usec(before.ru_stime), ru.ru_maxrss);
    return 0;
}

int main(int argc, char** argv) {
    int first = 3; /* index of "--" */
    char* before[] = {"/bin/sh", "-c", NULL, NULL};
    if (argc > 5 && strcmp(argv[3], "-b") == 0) {
        before[2] = argv[4];
        first = 5;
    }
    if (argc < first + 3 || strcmp(argv[first], "--") != 0) {
        fprintf(stderr, "usage: timeit ROUNDS WARMUP [-b SHELL-CMD] -- NAME CMD [ARG...] [:: NAME "
                        "CMD [ARG...]]...\n");
        return 2;
    }
    const long rounds = parse_count(argv[1], "round count");
    const long warmup = parse_count(argv[2], "warm-up count");
    const struct command prep = {"-b", before};

    /* Split the rest at "::" in place: each separator becomes a NULL that
     * ends the previous command's argv. */
    struct command cmds[16];
    int ncmd = 0;
    for (int i = first + 1; i < argc;) {
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

    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
        perror("timeit: can't become a child subreaper");
        return 2;
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
        for (int i = 0; i < ncmd; i++) {
            const int k = (r + warmup) % 2 == 0 ? i : ncmd - 1 - i;
            if ((before[2] != NULL && run_one(&prep, -1, &fa) != 0) ||
                run_one(&cmds[k], r < 0 ? -1 : r, &fa) != 0)
                return 1;
        }
    if (fflush(stdout) != 0) {
        perror("timeit: can't write results");
        return 1;
    }
    return 0;
}

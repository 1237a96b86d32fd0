/* mpi_check: every rank contributes its rank number to an MPI_Allreduce and
   checks the sum against size*(size-1)/2, which it knows without talking to
   anyone. A rank that was wired up wrongly (a lone singleton, a duplicate
   rank, a split world) gets a different sum, or a different size than the
   launcher promised in $CH_EXPECT_SIZE. Each rank prints one line; rank 0
   prints a final verdict once every rank has checked (a second allreduce of
   the failures). Exit status 0 only if every rank agreed. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv) {
    int rank, size, fails, total_fails;
    long mine, sum, want;
    char host[256];
    const char* expect = getenv("CH_EXPECT_SIZE");

    (void)argc;
    (void)argv;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "?");
    host[sizeof(host) - 1] = '\0';

    mine = rank;
    MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    want = (long)size * (size - 1) / 2;
    fails = (sum != want);
    if (expect != NULL && atoi(expect) != size)
        fails = 1;
    printf("rank %d/%d on %s: allreduce sum %ld, expected %ld: %s\n", rank, size, host, sum, want,
           fails ? "FAIL" : "ok");
    fflush(stdout);

    MPI_Allreduce(&fails, &total_fails, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("mpi_check: %d ranks, %s\n", size, total_fails == 0 ? "all ok" : "FAILED");
    MPI_Finalize();
    return total_fails == 0 ? 0 : 1;
}

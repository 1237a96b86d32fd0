/* mpi_compute.c: the compute kernel of test/bench/compute.sh. Each rank
 * relaxes its own 2D grid with a 5-point Jacobi stencil (floating point and
 * memory traffic, as most simulation codes), and the ranks agree on the
 * global residual with an MPI_Allreduce every iteration (a latency-bound
 * collective, as a solver's convergence test). The same binary runs on the
 * host and in the container, so any difference is the container's.
 *
 *   mpi_compute [N [ITERS]]    grid N x N per rank (default 1024), ITERS (200)
 *
 * Rank 0 prints "kernel_s SECONDS residual R cpu_s CPU": SECONDS the
 * slowest rank's wall time from a barrier after MPI_Init to the last
 * allreduce (start-up and wire-up excluded), R the final residual, the same
 * on every run and in every environment (a check that the work was the
 * same), CPU the largest CPU time (user + system) a rank spent in the
 * stencil loops alone (not in MPI, whose waiting is busy polling and so
 * depends on the other ranks), which other load on a shared machine
 * disturbs far less than wall time. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
    int rank, size, n = 1024, iters = 200;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 1)
        n = atoi(argv[1]);
    if (argc > 2)
        iters = atoi(argv[2]);
    if (n < 8 || iters < 1) {
        if (rank == 0)
            fprintf(stderr, "mpi_compute: bad N or ITERS\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    size_t cells = (size_t)(n + 2) * (size_t)(n + 2);
    double *a = calloc(cells, sizeof(double)), *b = calloc(cells, sizeof(double));
    if (a == NULL || b == NULL)
        MPI_Abort(MPI_COMM_WORLD, 3);
    /* A hot edge, different per rank so the ranks' work differs in data only. */
    for (int j = 0; j < n + 2; j++)
        a[j] = b[j] = 1.0 + rank;

    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime(), cpu = 0.0, global = 0.0;
    for (int it = 0; it < iters; it++) {
        double local = 0.0, c0 = cpu_now();
        for (int i = 1; i <= n; i++)
            for (int j = 1; j <= n; j++) {
                size_t k = (size_t)i * (size_t)(n + 2) + (size_t)j;
                double v =
                    0.25 * (a[k - 1] + a[k + 1] + a[k - (size_t)(n + 2)] + a[k + (size_t)(n + 2)]);
                local += (v - a[k]) * (v - a[k]);
                b[k] = v;
            }
        cpu += cpu_now() - c0;
        double* t = a;
        a = b;
        b = t;
        MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
    double mine[2] = {MPI_Wtime() - t0, cpu}, most[2];
    MPI_Reduce(mine, most, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("kernel_s %.6f residual %.12e cpu_s %.6f\n", most[0], global, most[1]);
    free(a);
    free(b);
    MPI_Finalize();
    return 0;
}

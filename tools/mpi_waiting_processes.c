/* mpi_waiting_processes.c: do MPI processes that wait in a receive slow the
 * processes that compute, when a job has more processes than cores? The
 * strategy advisor's 4-process layouts on 2 cores measured 1.2-1.3x their
 * predicted step for the small models (bench/advisor.md, 2026-12-06 20:00).
 * Ranks below COMPUTING run a fixed scalar loop (~0.2 s on one core) and
 * then release the others, which wait for them in MPI_Recv meanwhile; rank 0
 * prints each computing rank's wall time, 5 rounds.
 *
 *   mpicc -O1 tools/mpi_waiting_processes.c -o build/mpi_waiting_processes
 *   mpirun --oversubscribe -np 2 build/mpi_waiting_processes 2   # two compute, none waits
 *   mpirun --oversubscribe -np 4 build/mpi_waiting_processes 2   # two compute, two wait
 *   mpirun --oversubscribe -np 4 build/mpi_waiting_processes 4   # four compute (take turns)
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int computing = argc > 1 ? atoi(argv[1]) : size;
    if (computing < 1 || computing > size || computing > 64) computing = size;
    volatile double acc = 0;
    for (int round = 0; round < 5; round++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double seconds = 0, all[64];
        if (rank < computing) {
            double t = now();
            for (long i = 0; i < 60000000; i++) acc += i * 1e-9;
            seconds = now() - t;
            int token = 1;
            for (int to = computing + rank; to < size; to += computing) MPI_Send(&token, 1, MPI_INT, to, 0, MPI_COMM_WORLD);
        } else {
            int token;
            MPI_Recv(&token, 1, MPI_INT, rank % computing, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        }
        MPI_Gather(&seconds, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            printf("round %d, %d of %d processes computing: wall s", round, computing, size);
            for (int i = 0; i < computing; i++) printf(" %.3f", all[i]);
            printf("\n");
        }
    }
    MPI_Finalize();
    return 0;
}

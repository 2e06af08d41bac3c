/*
 * c_host.c — the C entry points of parml's MPI layer, from a C host under
 * mpirun (tests/mpi/run_mpi_tests.sh).
 *
 *   c_host parml-init   parml initialises and finalises MPI (built without
 *                       -lmpi: libparml loads Open MPI by itself)
 *   c_host host-init    the host initialises MPI, hands parml a communicator
 *                       of its own (built with mpicc), and finalises MPI;
 *                       parml_mpi_finalize must leave MPI alone
 *
 * Prints "rank R: ok" and exits 0, or prints the failed check and exits 1.
 */
#include <parml.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef WITH_MPI
#include <mpi.h>
#endif

static int failures = 0;

#define EXPECT(cond, ...)                                          \
    do {                                                           \
        if (!(cond)) {                                             \
            failures++;                                            \
            fprintf(stderr, "c_host:%d: %s: ", __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                          \
            fprintf(stderr, " (last error: %s)\n", parml_last_error()); \
        }                                                          \
    } while (0)

static int env_int(const char *name) {
    const char *v = getenv(name);
    return v ? atoi(v) : -1;
}

static int32_t rank_of_parml(void) {
    int32_t r = -1;
    EXPECT(parml_mpi_rank(&r) == PARML_OK, "parml_mpi_rank");
    return r;
}

static int32_t size_of_parml(void) {
    int32_t n = -1;
    EXPECT(parml_mpi_world_size(&n) == PARML_OK, "parml_mpi_world_size");
    return n;
}

static void parml_init_mode(void) {
    /* Before anything initialises MPI: rank 0 of 1. */
    EXPECT(rank_of_parml() == 0 && size_of_parml() == 1, "rank/size before parml_mpi_init");
    EXPECT(parml_mpi_init() == PARML_OK, "parml_mpi_init");
    EXPECT(parml_mpi_init() == PARML_OK, "parml_mpi_init again (idempotent)");
    int rank = env_int("OMPI_COMM_WORLD_RANK"), size = env_int("OMPI_COMM_WORLD_SIZE");
    EXPECT(rank_of_parml() == rank, "rank %d, mpirun says %d", (int)rank_of_parml(), rank);
    EXPECT(size_of_parml() == size, "size %d, mpirun says %d", (int)size_of_parml(), size);
    EXPECT(parml_mpi_finalize() == PARML_OK, "parml_mpi_finalize");
    EXPECT(parml_mpi_init() == PARML_ERR_STATE, "parml_mpi_init after finalize must fail with PARML_ERR_STATE");
    printf("rank %d: ok (parml initialised and finalised MPI)\n", rank);
}

#ifdef WITH_MPI
static void host_init_mode(void) {
    int provided = 0, rank = 0, size = 0;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* Before parml is given a communicator it works in MPI_COMM_WORLD. */
    EXPECT(rank_of_parml() == rank && size_of_parml() == size, "rank/size in MPI_COMM_WORLD");
    EXPECT(parml_mpi_use_comm((void *)MPI_COMM_NULL) == PARML_ERR_INVALID_ARGUMENT, "MPI_COMM_NULL refused");
    /* A communicator of the host's: the odd and even ranks, reversed. */
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, rank % 2, -rank, &half);
    int half_rank = 0, half_size = 0;
    MPI_Comm_rank(half, &half_rank);
    MPI_Comm_size(half, &half_size);
    EXPECT(parml_mpi_use_comm((void *)half) == PARML_OK, "parml_mpi_use_comm");
    EXPECT(rank_of_parml() == half_rank, "rank %d in the host's communicator, expected %d", (int)rank_of_parml(), half_rank);
    EXPECT(size_of_parml() == half_size, "size %d in the host's communicator, expected %d", (int)size_of_parml(), half_size);
    EXPECT(parml_mpi_init() == PARML_OK, "parml_mpi_init with the host's MPI (a no-op)");
    EXPECT(parml_mpi_finalize() == PARML_OK, "parml_mpi_finalize (a no-op: the host initialised MPI)");
    int finalized = 1;
    MPI_Finalized(&finalized);
    EXPECT(!finalized, "parml finalised the host's MPI");
    MPI_Barrier(half);
    MPI_Comm_free(&half);
    MPI_Finalize();
    printf("rank %d: ok (the host's MPI and communicator)\n", rank);
}
#endif

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "parml-init") == 0) {
        parml_init_mode();
#ifdef WITH_MPI
    } else if (strcmp(mode, "host-init") == 0) {
        host_init_mode();
#endif
    } else {
        fprintf(stderr, "usage: %s parml-init|host-init\n", argv[0]);
        return 2;
    }
    return failures ? 1 : 0;
}

/*
 * Private shim over Open MPI, loaded at run time with dlopen.
 *
 * Why a shim: Swift cannot see <mpi.h>'s macros (MPI_COMM_WORLD, MPI_FLOAT,
 * MPI_SUM are addresses of library globals behind macros).
 *
 * Why dlopen: libparml.so must not depend on libmpi. A host that never asks
 * for the MPI backend (the threads default, Python without mpirun) then
 * loads neither libmpi nor its dependencies (hwloc, pmix, libevent, ...),
 * and MPI is never initialised behind its back. libmpi is loaded on the
 * first MPI call, RTLD_GLOBAL because Open MPI's own plugins (mca_*.so)
 * resolve libmpi's symbols from the global scope.
 *
 * The handles are Open MPI's: MPI_Comm and MPI_Request are pointers
 * (Open MPI's ABI, not MPICH's ints), carried here as void *.
 *
 * Thread rule: every call takes one process-wide lock unless MPI runs at
 * MPI_THREAD_MULTIPLE, so MPI_THREAD_SERIALIZED is enough for parml.
 * Not part of the public API: nothing here starts with parml_.
 */
#ifndef PML_MPI_H
#define PML_MPI_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void *pml_mpi_comm;    /* MPI_Comm */
typedef void *pml_mpi_request; /* MPI_Request; NULL once completed or never posted */

/* Loads libmpi once (thread-safe): $PARML_MPI_LIBRARY, else libmpi.so.40,
 * else libmpi.so. Returns 0, or -1 with a message in err. */
int pml_mpi_load(char *err, size_t errlen);
/* 1 once pml_mpi_load succeeded in this process, without loading anything. */
int pml_mpi_loaded(void);
/* 1 when libmpi is usable without mapping a new library: already loaded by
 * parml, or by the host (then it completes pml_mpi_load). */
int pml_mpi_present(void);

/* The functions below need a successful pml_mpi_load; they return an MPI
 * error code (0 = MPI_SUCCESS). */

int pml_mpi_initialized(int *flag);
int pml_mpi_finalized(int *flag);
/* MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided). */
int pml_mpi_init_serialized(int *provided);
int pml_mpi_query_thread(int *provided);
int pml_mpi_finalize(void);
/* MPI_Abort: does not return when MPI works. */
int pml_mpi_abort(pml_mpi_comm comm, int code);
/* MPI_ERR_TRUNCATE: a receive got a longer message than it posted
 * (checked against <mpi.h> when the shim is compiled). */
enum { PML_MPI_ERR_TRUNCATE = 15 };
/* MPI_THREAD_SINGLE..MULTIPLE as 0..3 (their values in Open MPI). */
enum { PML_MPI_THREAD_SINGLE = 0, PML_MPI_THREAD_FUNNELED, PML_MPI_THREAD_SERIALIZED, PML_MPI_THREAD_MULTIPLE };

pml_mpi_comm pml_mpi_comm_world(void);
pml_mpi_comm pml_mpi_comm_null(void);
int pml_mpi_comm_rank(pml_mpi_comm comm, int *rank);
int pml_mpi_comm_size(pml_mpi_comm comm, int *size);
/* MPI_Comm_dup, then MPI_ERRORS_RETURN on the copy (errors come back as codes). */
int pml_mpi_comm_dup(pml_mpi_comm comm, pml_mpi_comm *out);
/* MPI_Comm_split (color >= 0), then MPI_ERRORS_RETURN on the result. */
int pml_mpi_comm_split(pml_mpi_comm comm, int color, int key, pml_mpi_comm *out);
int pml_mpi_comm_free(pml_mpi_comm *comm);
/* 1 when `comm` is a valid intracommunicator handle of this process (MPI_Comm_test_inter). */
int pml_mpi_comm_check(pml_mpi_comm comm);

/* Non-blocking point to point. Counts are elements (float or byte). */
int pml_mpi_isend_floats(const float *buf, int count, int dest, int tag, pml_mpi_comm comm, pml_mpi_request *req);
int pml_mpi_irecv_floats(float *buf, int count, int source, int tag, pml_mpi_comm comm, pml_mpi_request *req);
int pml_mpi_isend_bytes(const void *buf, int count, int dest, int tag, pml_mpi_comm comm, pml_mpi_request *req);
int pml_mpi_irecv_bytes(void *buf, int count, int source, int tag, pml_mpi_comm comm, pml_mpi_request *req);
/* MPI_Test. On completion *done = 1, *req = NULL, *source and *bytes (when
 * not NULL) are the status's source and received byte count; a receive that
 * got a longer message than posted returns MPI_ERR_TRUNCATE. */
int pml_mpi_test(pml_mpi_request *req, int *done, int *source, int *bytes);
/* MPI_Iprobe for (source, tag); ANY_SOURCE = -1. *bytes is the message's size. */
int pml_mpi_iprobe(int source, int tag, pml_mpi_comm comm, int *found, int *from, int *bytes);
/* MPI_Cancel then MPI_Request_free of a pending request (*req becomes NULL). */
int pml_mpi_cancel(pml_mpi_request *req);

/* Raw MPI_Allreduce(MPI_IN_PLACE, MPI_FLOAT, MPI_SUM): the benchmark's baseline. */
int pml_mpi_allreduce_sum(float *buf, int count, pml_mpi_comm comm);
/* A blocking MPI_Barrier (benchmarks and tests only: no watchdog). */
int pml_mpi_barrier(pml_mpi_comm comm);

/* MPI_Error_string into text (NUL-terminated). */
void pml_mpi_error_string(int code, char *text, size_t len);
/* The library version line (MPI_Get_library_version), "" before loading. */
const char *pml_mpi_library_version(void);

#ifdef __cplusplus
}
#endif
#endif

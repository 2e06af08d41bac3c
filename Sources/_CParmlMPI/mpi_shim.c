// Open MPI through dlopen. See pml_mpi.h for why.
//
// <mpi.h> is read for its types and prototypes only: every function is
// called through a pointer typed with __typeof__ of its declaration (so the
// compiler checks the calls against the installed header), and the
// predefined handles (MPI_COMM_WORLD, MPI_FLOAT, ...) are looked up with
// dlsym instead of taking the address the macros name. Using a macro such
// as MPI_FLOAT here would leave an undefined symbol in libparml.so and make
// it fail to load without libmpi; tests/mpi/run_mpi_tests.sh checks that
// none is left.
#define _GNU_SOURCE
#include "pml_mpi.h"

#if !__has_include(<mpi.h>)
#error "mpi.h not found: install libopenmpi-dev (tools/install-deps.sh) or set PARML_MPI_INCLUDE to its folder"
#endif
#include <mpi.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(PML_MPI_ERR_TRUNCATE == MPI_ERR_TRUNCATE, "pml_mpi.h: MPI_ERR_TRUNCATE");
_Static_assert(PML_MPI_THREAD_SERIALIZED == MPI_THREAD_SERIALIZED, "pml_mpi.h: thread levels");
_Static_assert(PML_MPI_THREAD_MULTIPLE == MPI_THREAD_MULTIPLE, "pml_mpi.h: thread levels");

#define FN(name) static __typeof__(name) *p_##name
FN(MPI_Initialized); FN(MPI_Finalized); FN(MPI_Init_thread); FN(MPI_Query_thread);
FN(MPI_Finalize); FN(MPI_Abort); FN(MPI_Comm_rank); FN(MPI_Comm_size); FN(MPI_Comm_dup);
FN(MPI_Comm_split); FN(MPI_Comm_free); FN(MPI_Comm_set_errhandler); FN(MPI_Comm_test_inter);
FN(MPI_Isend); FN(MPI_Irecv); FN(MPI_Test); FN(MPI_Iprobe); FN(MPI_Cancel); FN(MPI_Request_free);
FN(MPI_Get_count); FN(MPI_Allreduce); FN(MPI_Barrier); FN(MPI_Error_string); FN(MPI_Get_library_version);
#undef FN

static MPI_Comm h_comm_world, h_comm_null;
static MPI_Datatype h_float, h_byte;
static MPI_Op h_sum;
static MPI_Errhandler h_errors_return;
static MPI_Request h_request_null;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_status = -1;
static char load_error[512];
static char library_path[512];
static char version_text[MPI_MAX_LIBRARY_VERSION_STRING];

// MPI_THREAD_SERIALIZED: calls from different threads must not overlap.
// Taken by every call until MPI reports MPI_THREAD_MULTIPLE.
static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;
static int lock_free;

#define LOCKED(expr)                                                  \
    do {                                                              \
        if (lock_free) return (expr);                                 \
        pthread_mutex_lock(&call_lock);                               \
        int rc_ = (expr);                                             \
        pthread_mutex_unlock(&call_lock);                             \
        return rc_;                                                   \
    } while (0)

static void *must_sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p && load_error[0] == 0)
        snprintf(load_error, sizeof load_error, "libmpi at %s lacks symbol %s (parml needs Open MPI 4 or later)",
                 library_path, name);
    return p;
}

static void *data_sym(void *h, const char *name) {
    void *p = dlsym(RTLD_DEFAULT, name);
    return p ? p : must_sym(h, name);
}

// The names tried, in order: $PARML_MPI_LIBRARY, Open MPI 4/5's SONAME, the dev link.
static const char *candidate(size_t i) {
    static const char *fixed[] = {"libmpi.so.40", "libmpi.so"};
    if (i == 0) return getenv("PARML_MPI_LIBRARY");
    return i <= 2 ? fixed[i - 1] : NULL;
}

static void load_once(void) {
    void *h = NULL;
    for (size_t i = 0; i < 3 && !h; i++) {
        const char *name = candidate(i);
        if (!name || !name[0]) continue;
        h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
        if (h) snprintf(library_path, sizeof library_path, "%s", name);
    }
    if (!h) {
        snprintf(load_error, sizeof load_error,
                 "could not load Open MPI (tried $PARML_MPI_LIBRARY, libmpi.so.40, libmpi.so): %s; "
                 "install it with: apt-get install libopenmpi3 openmpi-bin", dlerror());
        return;
    }
#define LOAD(name) p_##name = (__typeof__(p_##name))must_sym(h, #name)
    LOAD(MPI_Initialized); LOAD(MPI_Finalized); LOAD(MPI_Init_thread); LOAD(MPI_Query_thread);
    LOAD(MPI_Finalize); LOAD(MPI_Abort); LOAD(MPI_Comm_rank); LOAD(MPI_Comm_size); LOAD(MPI_Comm_dup);
    LOAD(MPI_Comm_split); LOAD(MPI_Comm_free); LOAD(MPI_Comm_set_errhandler); LOAD(MPI_Comm_test_inter);
    LOAD(MPI_Isend); LOAD(MPI_Irecv); LOAD(MPI_Test); LOAD(MPI_Iprobe); LOAD(MPI_Cancel);
    LOAD(MPI_Request_free); LOAD(MPI_Get_count); LOAD(MPI_Allreduce); LOAD(MPI_Barrier);
    LOAD(MPI_Error_string); LOAD(MPI_Get_library_version);
#undef LOAD
    // The predefined handles are the addresses of these globals (Open MPI's
    // OMPI_PREDEFINED_GLOBAL), looked up in the global scope: a host linked
    // with libmpi may hold copies of them (copy relocations of a PIE), and
    // then libmpi itself uses the host's copies, not its own.
    h_comm_world = (MPI_Comm)data_sym(h, "ompi_mpi_comm_world");
    h_comm_null = (MPI_Comm)data_sym(h, "ompi_mpi_comm_null");
    h_float = (MPI_Datatype)data_sym(h, "ompi_mpi_float");
    h_byte = (MPI_Datatype)data_sym(h, "ompi_mpi_byte");
    h_sum = (MPI_Op)data_sym(h, "ompi_mpi_op_sum");
    h_errors_return = (MPI_Errhandler)data_sym(h, "ompi_mpi_errors_return");
    h_request_null = (MPI_Request)data_sym(h, "ompi_request_null");
    if (load_error[0]) return;
    int len = 0;
    p_MPI_Get_library_version(version_text, &len);  // callable before MPI_Init
    load_status = 0;
}

int pml_mpi_load(char *err, size_t errlen) {
    pthread_once(&once, load_once);
    if (load_status != 0 && err && errlen) snprintf(err, errlen, "%s", load_error);
    return load_status;
}

int pml_mpi_loaded(void) {
    // Reading load_status without the once: a stale 0/-1 only says "not yet".
    return __atomic_load_n(&load_status, __ATOMIC_ACQUIRE) == 0;
}

int pml_mpi_present(void) {
    if (pml_mpi_loaded()) return 1;
    for (size_t i = 0; i < 3; i++) {
        const char *name = candidate(i);
        if (!name || !name[0]) continue;
        void *h = dlopen(name, RTLD_NOW | RTLD_NOLOAD);
        if (h) {
            dlclose(h);  // pml_mpi_load opens it again (a reference count, no new mapping)
            return pml_mpi_load(NULL, 0) == 0;
        }
    }
    return 0;
}

const char *pml_mpi_library_version(void) { return version_text; }

// MPI_Initialized, MPI_Finalized and MPI_Query_thread may be called from
// any thread at any time (MPI 3.1, 12.4.3): no lock.
int pml_mpi_initialized(int *flag) { return p_MPI_Initialized(flag); }
int pml_mpi_finalized(int *flag) { return p_MPI_Finalized(flag); }

int pml_mpi_query_thread(int *provided) {
    int rc = p_MPI_Query_thread(provided);
    if (rc == MPI_SUCCESS) lock_free = (*provided == MPI_THREAD_MULTIPLE);
    return rc;
}

int pml_mpi_init_serialized(int *provided) {
    pthread_mutex_lock(&call_lock);
    int rc = p_MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided);
    pthread_mutex_unlock(&call_lock);
    return rc;
}

int pml_mpi_finalize(void) { LOCKED(p_MPI_Finalize()); }
// Not under the lock: another thread may hold it while waiting on a peer.
int pml_mpi_abort(pml_mpi_comm comm, int code) { return p_MPI_Abort((MPI_Comm)comm, code); }

pml_mpi_comm pml_mpi_comm_world(void) { return h_comm_world; }
pml_mpi_comm pml_mpi_comm_null(void) { return h_comm_null; }
int pml_mpi_comm_rank(pml_mpi_comm comm, int *rank) { LOCKED(p_MPI_Comm_rank((MPI_Comm)comm, rank)); }
int pml_mpi_comm_size(pml_mpi_comm comm, int *size) { LOCKED(p_MPI_Comm_size((MPI_Comm)comm, size)); }

static int errors_return(MPI_Comm comm) { return p_MPI_Comm_set_errhandler(comm, h_errors_return); }

static int dup_locked(MPI_Comm comm, MPI_Comm *out) {
    int rc = p_MPI_Comm_dup(comm, out);
    return rc == MPI_SUCCESS ? errors_return(*out) : rc;
}

int pml_mpi_comm_dup(pml_mpi_comm comm, pml_mpi_comm *out) {
    // MPI_Comm_dup reports a bad handle through the handler of `comm`, which
    // for a host's communicator may be MPI_ERRORS_ARE_FATAL: callers check it
    // first with pml_mpi_comm_check.
    LOCKED(dup_locked((MPI_Comm)comm, (MPI_Comm *)out));
}

static int split_locked(MPI_Comm comm, int color, int key, MPI_Comm *out) {
    int rc = p_MPI_Comm_split(comm, color, key, out);
    return rc == MPI_SUCCESS ? errors_return(*out) : rc;
}

int pml_mpi_comm_split(pml_mpi_comm comm, int color, int key, pml_mpi_comm *out) {
    LOCKED(split_locked((MPI_Comm)comm, color, key, (MPI_Comm *)out));
}

int pml_mpi_comm_free(pml_mpi_comm *comm) { LOCKED(p_MPI_Comm_free((MPI_Comm *)comm)); }

int pml_mpi_comm_check(pml_mpi_comm comm) {
    if (!comm || comm == (pml_mpi_comm)h_comm_null) return 0;
    // A bad handle that is not NULL cannot be told from a good one without
    // dereferencing it; MPI_Comm_test_inter on a valid handle answers 0.
    int inter = 1;
    pthread_mutex_lock(&call_lock);
    int rc = p_MPI_Comm_test_inter((MPI_Comm)comm, &inter);
    pthread_mutex_unlock(&call_lock);
    return rc == MPI_SUCCESS && !inter;
}

int pml_mpi_isend_floats(const float *buf, int count, int dest, int tag, pml_mpi_comm comm, pml_mpi_request *req) {
    LOCKED(p_MPI_Isend(buf, count, h_float, dest, tag, (MPI_Comm)comm, (MPI_Request *)req));
}

int pml_mpi_irecv_floats(float *buf, int count, int source, int tag, pml_mpi_comm comm, pml_mpi_request *req) {
    LOCKED(p_MPI_Irecv(buf, count, h_float, source, tag, (MPI_Comm)comm, (MPI_Request *)req));
}

int pml_mpi_isend_bytes(const void *buf, int count, int dest, int tag, pml_mpi_comm comm, pml_mpi_request *req) {
    LOCKED(p_MPI_Isend(buf, count, h_byte, dest, tag, (MPI_Comm)comm, (MPI_Request *)req));
}

int pml_mpi_irecv_bytes(void *buf, int count, int source, int tag, pml_mpi_comm comm, pml_mpi_request *req) {
    LOCKED(p_MPI_Irecv(buf, count, h_byte, source, tag, (MPI_Comm)comm, (MPI_Request *)req));
}

static int test_locked(MPI_Request *req, int *done, int *source, int *bytes) {
    MPI_Status status;
    memset(&status, 0, sizeof status);
    int rc = p_MPI_Test(req, done, &status);
    if (rc == MPI_ERR_IN_STATUS) rc = status.MPI_ERROR;
    if (rc != MPI_SUCCESS || !*done) return rc;
    *req = NULL;
    if (source) *source = status.MPI_SOURCE;
    if (bytes) {
        int n = 0;
        p_MPI_Get_count(&status, h_byte, &n);
        *bytes = n;
    }
    return status.MPI_ERROR == MPI_ERR_TRUNCATE ? MPI_ERR_TRUNCATE : MPI_SUCCESS;
}

int pml_mpi_test(pml_mpi_request *req, int *done, int *source, int *bytes) {
    *done = 0;
    if (!*req || *req == (pml_mpi_request)h_request_null) {
        *done = 1;
        *req = NULL;
        return MPI_SUCCESS;
    }
    LOCKED(test_locked((MPI_Request *)req, done, source, bytes));
}

static int iprobe_locked(int source, int tag, MPI_Comm comm, int *found, int *from, int *bytes) {
    MPI_Status status;
    memset(&status, 0, sizeof status);
    int rc = p_MPI_Iprobe(source, tag, comm, found, &status);
    if (rc != MPI_SUCCESS || !*found) return rc;
    if (from) *from = status.MPI_SOURCE;
    if (bytes) {
        int n = 0;
        p_MPI_Get_count(&status, h_byte, &n);
        *bytes = n;
    }
    return MPI_SUCCESS;
}

int pml_mpi_iprobe(int source, int tag, pml_mpi_comm comm, int *found, int *from, int *bytes) {
    *found = 0;
    LOCKED(iprobe_locked(source, tag, (MPI_Comm)comm, found, from, bytes));
}

static int cancel_locked(MPI_Request *req) {
    int rc = p_MPI_Cancel(req);
    int rc2 = p_MPI_Request_free(req);
    return rc != MPI_SUCCESS ? rc : rc2;
}

int pml_mpi_cancel(pml_mpi_request *req) {
    if (!*req || *req == (pml_mpi_request)h_request_null) {
        *req = NULL;
        return MPI_SUCCESS;
    }
    pthread_mutex_lock(&call_lock);
    int rc = cancel_locked((MPI_Request *)req);
    pthread_mutex_unlock(&call_lock);
    *req = NULL;
    return rc;
}

int pml_mpi_allreduce_sum(float *buf, int count, pml_mpi_comm comm) {
    LOCKED(p_MPI_Allreduce(MPI_IN_PLACE, buf, count, h_float, h_sum, (MPI_Comm)comm));
}

int pml_mpi_barrier(pml_mpi_comm comm) { LOCKED(p_MPI_Barrier((MPI_Comm)comm)); }

void pml_mpi_error_string(int code, char *text, size_t len) {
    if (!len) return;
    char buf[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (load_status == 0 && p_MPI_Error_string(code, buf, &n) == MPI_SUCCESS) {
        snprintf(text, len, "%.*s", n, buf);
    } else {
        snprintf(text, len, "MPI error %d", code);
    }
}

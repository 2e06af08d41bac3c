// Worker pool (pml_pool.h). A job is a ticket (generation << 32 | next part)
// that the caller and the workers advance with compare-and-swap: a thread
// reads the job's fields, then claims a part by moving the ticket on; the
// claim succeeds only while the ticket still names that job, so a thread
// never runs a part of a job whose fields it did not read. The caller closes
// a finished job's ticket before writing the next job's fields.
#define _GNU_SOURCE
#include "pml_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define PML_POOL_MAX 64
#define PML_CLOSED 0xFFFFFFFFull

static _Atomic uint64_t ticket;            // generation << 32 | next part
static _Atomic(pml_pool_task) job_task;
static _Atomic(void *) job_ctx;
static _Atomic long job_parts;
static _Atomic long job_done;
static _Atomic int busy;                   // a caller owns the pool
static _Atomic int active = 1;             // threads that take parts, caller included
static int started = 1;                    // threads that exist, caller included
// A waiting worker spins 50 µs, yields until 2 ms, then sleeps: waking a
// sleeping thread took ~0.4 ms here, longer than most jobs (docs/parallel.md).
static const long spin_ns = 50000, idle_ns = 2000000;

static pthread_mutex_t lot = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static _Atomic int sleepers;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Claims and runs parts of the job that generation gen names until none is left.
static void take_parts(uint32_t gen) {
    for (;;) {
        uint64_t t = atomic_load(&ticket);
        if ((uint32_t)(t >> 32) != gen) return;
        pml_pool_task task = atomic_load_explicit(&job_task, memory_order_acquire);
        void *ctx = atomic_load_explicit(&job_ctx, memory_order_acquire);
        long parts = atomic_load_explicit(&job_parts, memory_order_acquire);
        uint64_t next = t & 0xFFFFFFFFull;
        if ((long)next >= parts) return;
        if (!atomic_compare_exchange_weak(&ticket, &t, t + 1)) continue;
        task(ctx, (long)next);
        atomic_fetch_add(&job_done, 1);
    }
}

static _Thread_local int slot;

int pml_pool_slot(void) { return slot; }

int pml_pool_claim(unsigned *taken, int preferred, int parts) {
    if (parts > 32) parts = 32;
    if (preferred >= 0 && preferred < parts) {
        unsigned bit = 1u << preferred;
        if (!(__atomic_fetch_or(taken, bit, __ATOMIC_ACQ_REL) & bit)) return preferred;
    }
    for (int p = 0; p < parts; p++) {
        unsigned bit = 1u << p;
        if (!(__atomic_fetch_or(taken, bit, __ATOMIC_ACQ_REL) & bit)) return p;
    }
    return -1;
}

static void *worker_main(void *arg) {
    int index = (int)(intptr_t)arg;
    slot = index;
    uint32_t seen = (uint32_t)(atomic_load(&ticket) >> 32);
    for (;;) {
        // Wait for a new generation: spin, then yield, then sleep.
        long start = now_ns(), spins = 0;
        uint32_t gen;
        for (;;) {
            gen = (uint32_t)(atomic_load(&ticket) >> 32);
            if (gen != seen) break;
            if ((++spins & 63) == 0) {
                long waited = now_ns() - start;
                if (waited >= idle_ns) {
                    pthread_mutex_lock(&lot);
                    atomic_fetch_add(&sleepers, 1);
                    while ((uint32_t)(atomic_load(&ticket) >> 32) == seen) pthread_cond_wait(&wake, &lot);
                    atomic_fetch_sub(&sleepers, 1);
                    pthread_mutex_unlock(&lot);
                    start = now_ns();
                } else if (waited >= spin_ns) {
                    sched_yield();
                }
            } else {
                cpu_relax();
            }
        }
        seen = gen;
        if (index < atomic_load(&active)) take_parts(gen);
    }
    return NULL;
}

// Trainers on two host threads may set the count at once.
static pthread_mutex_t setup = PTHREAD_MUTEX_INITIALIZER;

int pml_pool_set_threads(int threads) {
    if (threads < 1) threads = 1;
    if (threads > PML_POOL_MAX) threads = PML_POOL_MAX;
    pthread_mutex_lock(&setup);
    while (started < threads) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker_main, (void *)(intptr_t)started);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        started++;
    }
    int now_active = threads < started ? threads : started;
    atomic_store(&active, now_active);
    pthread_mutex_unlock(&setup);
    return now_active;
}

int pml_pool_threads(void) { return atomic_load(&active); }

static _Thread_local int keeps_work;

int pml_pool_keep_on_this_thread(int on) {
    int before = keeps_work;
    keeps_work = on != 0;
    return before;
}

void pml_pool_run(long parts, pml_pool_task task, void *ctx) {
    if (parts <= 0) return;
    int expected = 0;
    if (parts == 1 || keeps_work || atomic_load(&active) == 1 || !atomic_compare_exchange_strong(&busy, &expected, 1)) {
        for (long p = 0; p < parts; p++) task(ctx, p);
        return;
    }
    // Close the previous ticket, publish the job, then open it.
    uint64_t old = atomic_load(&ticket);
    uint32_t gen = (uint32_t)(old >> 32) + 1;
    atomic_store(&ticket, (old & ~0xFFFFFFFFull) | PML_CLOSED);
    atomic_store_explicit(&job_task, task, memory_order_release);
    atomic_store_explicit(&job_ctx, ctx, memory_order_release);
    atomic_store_explicit(&job_parts, parts, memory_order_release);
    atomic_store(&job_done, 0);
    atomic_store(&ticket, (uint64_t)gen << 32);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&lot);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&lot);
    }
    take_parts(gen);
    // The last parts are running on workers: spin (they are as long as
    // ours), yielding after spin_ns in case a worker waits for our CPU.
    long start = 0, spins = 0;
    while (atomic_load(&job_done) < parts) {
        if ((++spins & 63) != 0) {
            cpu_relax();
            continue;
        }
        if (start == 0) start = now_ns();
        else if (now_ns() - start >= spin_ns) sched_yield();
    }
    atomic_store(&busy, 0);
}

int pml_allowed_cpus(unsigned char *mask, int n) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    int count = 0;
    for (int i = 0; i < CPU_SETSIZE; i++) {
        int on = CPU_ISSET(i, &set) ? 1 : 0;
        if (mask != 0 && i < n) mask[i] = (unsigned char)on;
        count += on;
    }
    return count;
}

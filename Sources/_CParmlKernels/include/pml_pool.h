/*
 * Private worker pool: parml's own persistent threads for one rank's
 * products and element-wise loops (ProductThreads.swift, WorkerPool.swift).
 *
 * Why not OpenBLAS's threads: one OpenBLAS call split over two threads
 * scaled poorly at the engine's shapes, and everything around the products
 * ran on one thread. The pool runs any loop cut into parts; the caller
 * chooses the cut from the problem's shape (or, in BalancedRowCut.swift,
 * from the threads' paces among cuts that give the same bits), so no part's
 * arithmetic depends on which thread runs it or how many there are.
 *
 * One job at a time per process: a caller that finds the pool busy (another
 * rank, or a part that itself asks for the pool) runs every part itself, in
 * order. Not public API: nothing here starts with parml_.
 */
#ifndef PML_POOL_H
#define PML_POOL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One part of a job: part is in [0, parts). */
typedef void (*pml_pool_task)(void *ctx, long part);

/* Threads that share a job, the caller included (1 ... 64). Starts the
 * missing workers once (they persist; a lower count leaves the rest idle).
 * Returns the count in effect (lower than asked when a thread could not
 * start). Thread-safe; a job already running finishes with the threads
 * that took its parts. */
int pml_pool_set_threads(int threads);
int pml_pool_threads(void);

/* Runs task(ctx, p) for every p in [0, parts) on the caller and the idle
 * workers, and returns when all are done. Parts are claimed in order by
 * whichever thread is free; a part runs exactly once. */
void pml_pool_run(long parts, pml_pool_task task, void *ctx);

/* The calling thread's place in the pool: i for worker i (1 ... threads-1),
 * 0 for any other thread (the callers). BalancedRowCut.swift gives each
 * place its own rows of a product. */
int pml_pool_slot(void);

/* Claims one of parts (at most 32) pieces of a job whose flags live at
 * *taken (0 when the job starts): piece `preferred` when it is still free,
 * else the lowest free one. Returns the piece, or -1 when all are taken.
 * Lets a job whose parts differ in size hand each thread its own piece
 * whichever part number the pool gave it. */
int pml_pool_claim(unsigned *taken, int preferred, int parts);

/* 1: this thread's jobs run every part on this thread, the workers left
 * alone (work done once, whose timing does not matter); 0: shared again. Returns the setting before. */
int pml_pool_keep_on_this_thread(int on);

/* The CPUs this process may run on (its affinity mask, which mpirun's
 * binding or taskset narrow): their count, or -1 where it cannot be read;
 * mask[i] (i < n) is set to 1 for each allowed CPU i, 0 otherwise (mask may be NULL). */
int pml_allowed_cpus(unsigned char *mask, int n);

#ifdef __cplusplus
}
#endif

#endif

/*
 * large_alloc.c: memory for whole files and decoded tensors. A fresh 100 MB
 * malloc costs ~25,000 page faults on first touch (here ~75 ms, as long as
 * writing the bytes to the disk's cache); 2 MiB-aligned memory advised for
 * transparent huge pages takes ~50. free() releases it.
 */
#define _GNU_SOURCE /* MADV_HUGEPAGE */
#include "pml_proto.h"

#include <stdlib.h>
#include <sys/mman.h>

enum { HUGE_PAGE = 2 << 20 };

void *pml_alloc_bytes(size_t n) {
    if (n < HUGE_PAGE) return malloc(n ? n : 1);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, n) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, n, MADV_HUGEPAGE); /* advice only: without THP it is plain memory */
#endif
    return p;
}

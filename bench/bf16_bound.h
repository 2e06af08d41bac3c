/* bf16_bound.h — the bf16 products-alone bound of an MLP training step
 * (issue 23): the oneDNN bf16 matmuls a parml bf16 step runs (forward
 * y = x·Wᵀ with β = 1 as Linear's bias broadcast leaves it, dW = dyᵀ·x,
 * dx = dy·W but for the first layer), the same shapes, strides, β and
 * thread count, through the same shim (Sources/_CParmlDNNL/dnnl_matmul.c,
 * compiled in), on operands rounded to bf16 once at creation. Nothing
 * else: no rounding of operands per step, no bias, activation or loss
 * work, no optimizer. Used by bench.c and, through ctypes, by
 * bench/bf16_bound.py (build/libbf16_bound.so). */
#ifndef PARML_BENCH_BF16_BOUND_H
#define PARML_BENCH_BF16_BOUND_H

#include <stddef.h>
#include <stdint.h>

typedef struct bf16_bound bf16_bound;

/* An MLP with layer widths dims[0..n_dims-1] (n_dims <= 9) at `batch` rows
 * on `threads` oneDNN threads. NULL with a message in err when oneDNN or
 * the CPU's bf16 instructions are missing. */
bf16_bound *bf16_bound_create(const int64_t *dims, int n_dims, int64_t batch, int threads, char *err, size_t errlen);
/* The same with split = 1 (threads must be 2): each product cut in two by
 * rows of its result, the halves run at once on one-thread plans, one by
 * the caller and one by a helper thread (spinning between products), the
 * way parml splits float32 products over its own threads; split = 0 gives
 * each product to oneDNN's OpenMP threads whole, as parml's bf16 does. */
bf16_bound *bf16_bound_create_split(const int64_t *dims, int n_dims, int64_t batch, int threads, int split, char *err,
                                    size_t errlen);
void bf16_bound_free(bf16_bound *b);
/* Seconds per step, the mean of `steps` steps after one untimed; < 0 on a oneDNN error. */
double bf16_bound_step_seconds(bf16_bound *b, int steps);
/* Floating-point operations of one step's products (2·m·n·k summed). */
double bf16_bound_step_flop(const bf16_bound *b);
/* oneDNN's implementation of the first product ("brg:avx512_core_bf16"). */
const char *bf16_bound_impl(const bf16_bound *b);

/* One product at a time (not for split bounds): how many there are, in a
 * step's order (forward, then dW and dx from the last layer), the
 * floating-point operations of product i, and `reps` runs of it (0, or -1 /
 * a oneDNN status on error). The caller times them. */
int bf16_bound_products(const bf16_bound *b);
double bf16_bound_product_flop(const bf16_bound *b, int i);
int bf16_bound_product_run(bf16_bound *b, int i, int reps);

#endif

#!/usr/bin/env python3
"""Which blocks of a product give the whole product's bits, on the OpenBLAS
kernels parml picks on this CPU (docs/parallel.md, "The thread count changes
no bit").

Computes row-major C = A·op(B) once whole, then as blocks of r rows (or c
columns) of C, each a separate single-threaded sgemm like a
`ProductThreads` block, and says for each block size whether every element
equals the whole product's bit for bit. Shapes are the 784-1024-1024-10
MLP's products at batch 512 and one odd shape.

Then cuts products in two blocks of rows at a boundary s, as
`BalancedRowCut` does, and says at which s the two blocks give the uncut
product's bits: the MLP's weight gradient (A transposed), β = 1, and
products of 2,000 to 20,000 rows.

    PARML_LIBRARY=$PWD/.build/release/libparml.so python3 bench/openblas_block_bits.py
"""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import parml  # noqa: E402

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
ROWS = (8, 12, 16, 24, 32, 48, 64, 72, 96, 128, 144, 256)
COLUMNS = (4, 8, 12, 16, 32, 64, 128, 256)
# (m, n, k, B transposed): forward x·Wᵀ, the input gradient dy·W, and an odd shape.
SHAPES = ((512, 1024, 784, True), (512, 784, 1024, False), (150, 1000, 300, True))


def load_openblas() -> ctypes.CDLL:
    # parml loads OpenBLAS with its own kernel choice; opening the same soname
    # afterwards returns that already-loaded library.
    core = parml.blas_core()
    lib = ctypes.CDLL(os.environ.get("PARML_OPENBLAS_LIBRARY") or "libopenblas.so.0")
    lib.cblas_sgemm.restype = None
    lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [
        ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
        ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
    ]
    lib.openblas_set_num_threads.argtypes = [ctypes.c_int]
    lib.openblas_set_num_threads(1)
    lib.openblas_get_corename.restype = ctypes.c_char_p
    print(f"parml's kernels: {core}; OpenBLAS reports: {lib.openblas_get_corename().decode()}")
    return lib


def product(lib: ctypes.CDLL, a: np.ndarray, b: np.ndarray, transposed_b: bool) -> np.ndarray:
    m, k = a.shape
    n = b.shape[0] if transposed_b else b.shape[1]
    c = np.empty((m, n), np.float32)
    lib.cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS if transposed_b else NO_TRANS, m, n, k, 1.0,
                    a.ctypes.data, k, b.ctypes.data, b.shape[1], 0.0, c.ctypes.data, n)
    return c


# (m, n, k, A transposed, B transposed, β) for the two-block cuts.
CUT_SHAPES = ((512, 1024, 784, False, True, 0.0), (1024, 784, 512, True, False, 1.0), (16384, 384, 384, False, True, 0.0),
              (20000, 96, 64, True, False, 0.0), (12000, 200, 3000, False, False, 1.0))


def gemm(lib: ctypes.CDLL, ta: bool, tb: bool, m: int, n: int, k: int, a: np.ndarray, a_offset: int, lda: int,
         b: np.ndarray, ldb: int, beta: float, c: np.ndarray, c_offset: int) -> None:
    lib.cblas_sgemm(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 1.0,
                    a.ctypes.data + 4 * a_offset, lda, b.ctypes.data, ldb, beta, c.ctypes.data + 4 * c_offset, n)


def two_block_cuts(lib: ctypes.CDLL, rng: np.random.Generator) -> None:
    for m, n, k, ta, tb, beta in CUT_SHAPES:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        lda, ldb = (m if ta else k), (k if tb else n)
        whole = c0.copy()
        gemm(lib, ta, tb, m, n, k, a, 0, lda, b, ldb, beta, whole, 0)
        middle = m // 2 // 48 * 48
        results = []
        for s in (middle - 24, middle - 12, middle, middle + 12, middle + 16, middle + 32, middle + 36, m * 3 // 10 // 12 * 12):
            c = c0.copy()
            gemm(lib, ta, tb, s, n, k, a, 0, lda, b, ldb, beta, c, 0)
            gemm(lib, ta, tb, m - s, n, k, a, s if ta else s * lda, lda, b, ldb, beta, c, s * n)
            results.append((s, bool(np.array_equal(c, whole))))
        print(f"m {m} n {n} k {k}{' (A transposed)' if ta else ''}{' (B transposed)' if tb else ''}, beta {beta:g}")
        print("  cut in two at row: " + " ".join(f"{s}:{'same' if ok else 'differs'}" for s, ok in results))


def main() -> None:
    lib = load_openblas()
    rng = np.random.default_rng(0)
    for m, n, k, transposed_b in SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if transposed_b else (k, n)).astype(np.float32)
        whole = product(lib, a, b, transposed_b)
        rows = []
        for r in ROWS:
            blocks = [product(lib, np.ascontiguousarray(a[i:i + r]), b, transposed_b) for i in range(0, m, r)]
            rows.append((r, bool(np.array_equal(np.concatenate(blocks), whole))))
        columns = []
        for c in COLUMNS:
            parts = [np.ascontiguousarray(b[j:j + c] if transposed_b else b[:, j:j + c]) for j in range(0, n, c)]
            blocks = [product(lib, a, p, transposed_b) for p in parts]
            columns.append((c, bool(np.array_equal(np.concatenate(blocks, axis=1), whole))))
        same = lambda results: " ".join(f"{size}:{'same' if ok else 'differs'}" for size, ok in results)  # noqa: E731
        print(f"m {m} n {n} k {k}{' (B transposed)' if transposed_b else ''}")
        print(f"  blocks of rows:    {same(rows)}")
        print(f"  blocks of columns: {same(columns)}")
    two_block_cuts(lib, rng)


if __name__ == "__main__":
    main()

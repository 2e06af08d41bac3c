#!/usr/bin/env python3
"""How far apart the two vCPUs' paces are while both compute, and how
steady the difference is (BalancedRowCut.swift, bench/RESULTS.md).

Each of two threads, pinned to CPU 0 and CPU 1, runs the same
single-threaded sgemm (half of the 784-1024-1024-10 MLP's batch-512
forward product: 256 × 1024 over 1024) REPS times, both starting each
repetition together at a barrier. Prints the median time on each CPU, the
per-repetition ratio CPU 1 ÷ CPU 0 (median, 10th and 90th percentiles),
its median over each tenth of the run, and the lag-1 autocorrelation of
the ratio (near 0: each product's difference is noise; near 1: it
persists from product to product).

    PARML_LIBRARY=$PWD/.build/release/libparml.so python3 bench/vcpu_pace.py [REPS]
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import parml  # noqa: E402

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
M, N, K = 256, 1024, 1024


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    if os.cpu_count() is None or os.cpu_count() < 2:
        sys.exit("needs two CPUs")
    parml.blas_core()  # loads OpenBLAS with parml's kernel choice; the soname below is that library
    lib = ctypes.CDLL(os.environ.get("PARML_OPENBLAS_LIBRARY") or "libopenblas.so.0")
    lib.cblas_sgemm.restype = None
    lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [
        ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
        ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
    ]
    lib.openblas_set_num_threads(1)
    rng = np.random.default_rng(0)
    a = [rng.standard_normal((M, K)).astype(np.float32) for _ in range(2)]
    b = rng.standard_normal((N, K)).astype(np.float32)
    c = [np.empty((M, N), np.float32) for _ in range(2)]
    times = np.zeros((2, reps))
    barrier = threading.Barrier(2)

    def work(cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})
        for r in range(reps):
            barrier.wait()
            t = time.perf_counter()
            lib.cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, M, N, K, 1.0, a[cpu].ctypes.data, K, b.ctypes.data, K, 0.0,
                            c[cpu].ctypes.data, N)
            times[cpu, r] = time.perf_counter() - t

    threads = [threading.Thread(target=work, args=(cpu,)) for cpu in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ratio = times[1] / times[0]
    print(f"median ms: CPU 0 {np.median(times[0]) * 1e3:.3f}, CPU 1 {np.median(times[1]) * 1e3:.3f}")
    print(f"CPU 1 / CPU 0: median {np.median(ratio):.3f}, p10 {np.percentile(ratio, 10):.3f}, p90 {np.percentile(ratio, 90):.3f}")
    tenth = max(reps // 10, 1)
    print("by tenths: " + " ".join(f"{np.median(ratio[i:i + tenth]):.3f}" for i in range(0, reps - tenth + 1, tenth)))
    x = ratio - ratio.mean()
    print(f"lag-1 autocorrelation: {np.dot(x[1:], x[:-1]) / np.dot(x, x):.2f}")


if __name__ == "__main__":
    main()

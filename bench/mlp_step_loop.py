#!/usr/bin/env python3
"""Steps bench/bench.c's MLP (784-1024-1024-10, ReLU, SGD momentum 0.9, lr
0.01) from Python and prints its time a step: the loop bench/RESULTS.md
profiles under `perf record` and times in alternating processes when it
compares two builds or settings.

    PARML_LIBRARY=$PWD/.build/release/libparml.so python3 bench/mlp_step_loop.py BATCH THREADS STEPS [fp32|bf16] [deterministic]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import parml  # noqa: E402


def main() -> None:
    if len(sys.argv) not in (4, 5, 6) or sys.argv[5:] not in ([], ["deterministic"]):
        sys.exit(__doc__)
    batch, threads, steps = (int(a) for a in sys.argv[1:4])
    precision = sys.argv[4] if len(sys.argv) >= 5 else "bf16"
    deterministic = sys.argv[5:] == ["deterministic"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 784)).astype(np.float32)
    y = (np.arange(batch) % 10).astype(np.int64)
    model = parml.Sequential(
        [parml.Linear(784, 1024), parml.ReLU(), parml.Linear(1024, 1024), parml.ReLU(), parml.Linear(1024, 10)], seed=1
    )
    strategy = parml.Strategy(precision=precision, blas_threads=threads, deterministic=deterministic)
    with parml.Trainer(model, optimizer=parml.SGD(0.01, momentum=0.9), strategy=strategy) as t:
        for _ in range(5):
            t.step(x, y)
        t0 = time.perf_counter()
        for _ in range(steps):
            t.step(x, y)
        dt = (time.perf_counter() - t0) / steps
    mode = " deterministic" if deterministic else ""
    print(f"{precision}{mode} b{batch} t{threads}: {dt * 1e3:.2f} ms/step, {batch / dt:.0f} samples/s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark (not a test): float32 MLP training steps of few rows (batches
4-32), where the products' routing between OpenBLAS and oneDNN decides
the step (docs/engine.md, "Kernel choices"). Each library given runs in
its own process, alternating, --rounds rounds; a case's figure is its
median over rounds of the median of 5 blocks of 10 steps after 5 warm-up
steps: the calling thread's CPU time on one thread (--threads 1, pin the
process to a core with taskset), the wall clock on more.

    swift build -c release --product parml
    taskset -c 0 python3 bench/few_rows.py --libs OLD/libparml.so .build/release/libparml.so
    python3 bench/few_rows.py --threads 2 --libs OLD/libparml.so .build/release/libparml.so
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = [([784, 1024, 1024, 10], 4), ([784, 1024, 1024, 10], 8), ([784, 1024, 1024, 10], 16),
         ([784, 512, 512, 10], 8), ([128, 512, 512, 512, 512, 16], 16), ([784, 1024, 1024, 10], 32)]


def name(dims, batch):
    return "-".join(map(str, dims)) + f" b{batch}"


def child(threads):
    """Times every case with the library PARML_LIBRARY names; prints JSON."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
    import numpy as np
    import parml

    clock = time.thread_time if threads == 1 else time.perf_counter
    out = {}
    for dims, batch in CASES:
        layers = []
        for i in range(len(dims) - 1):
            layers.append(parml.Linear(dims[i], dims[i + 1]))
            if i + 2 < len(dims):
                layers.append(parml.ReLU())
        with parml.Trainer(parml.Sequential(layers, seed=0), optimizer=parml.SGD(0.01, momentum=0.9),
                           strategy=parml.Strategy(blas_threads=threads)) as t:
            rng = np.random.default_rng(0)
            x = rng.random((batch, dims[0]), dtype=np.float32)
            y = rng.integers(0, dims[-1], size=batch)
            for _ in range(5):
                t.step(x, y)
            blocks = []
            for _ in range(5):
                t0 = clock()
                for _ in range(10):
                    t.step(x, y)
                blocks.append((clock() - t0) / 10)
        out[name(dims, batch)] = statistics.median(blocks)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--libs", nargs="+", required=True, help="libparml.so files to compare (the first is the baseline)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.threads)
        return
    runs = {lib: [] for lib in a.libs}
    for _ in range(a.rounds):
        for lib in a.libs:
            env = dict(os.environ, PARML_LIBRARY=os.path.abspath(lib))
            r = subprocess.run([sys.executable, __file__, "--child", "--threads", str(a.threads), "--libs", lib],
                               env=env, check=True, capture_output=True, text=True)
            runs[lib].append(json.loads(r.stdout.strip().splitlines()[-1]))
    clock = "thread CPU time" if a.threads == 1 else "wall clock"
    print(f"ms per step, median of {a.rounds} alternating rounds ({clock}, {a.threads} thread(s)); ratio to {a.libs[0]}")
    base = a.libs[0]
    for dims, batch in CASES:
        n = name(dims, batch)
        med = {lib: statistics.median(r[n] for r in runs[lib]) * 1e3 for lib in a.libs}
        cells = "  ".join(f"{med[lib]:7.3f} ({med[lib] / med[base]:.2f})" for lib in a.libs)
        print(f"{n:28s} {cells}")


if __name__ == "__main__":
    main()

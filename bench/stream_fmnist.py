#!/usr/bin/env python3
"""Benchmark (not a test): training throughput from sharded .npy files on
disk (parml.open_shards: a prefetch thread, a shuffle buffer) against the
same training from memory, in the same run (issue 22: the stream must
reach 0.95 of memory).

Fashion-MNIST's 60,000 training images are written as uint8 shards of 6,000
rows (tools/make_shards.py) under a temporary directory; the memory side is
the same images as one float32 array (x / 255, what the stream makes of
uint8). Both train a 784-256-10 MLP (SGD with momentum, batch 128,
shuffled: the memory side by fit's permutation, the stream by its 16,384-row
buffer) for one epoch per block; blocks alternate memory, stream, memory, ...
(the machine's drift hits both alike). The figure is the median samples/s
over the blocks (wall time of the whole fit call, so the stream's epoch
start, which fills its buffer, counts), and the ratio the median of the
per-round ratios. The shards' pages are dropped after each read
(posix_fadvise), so every epoch reads the files again (from disk or the
page cache: see docs/data.md). The stream's thread starts its next epoch
once the last one is consumed, so it fills its buffer while the memory
block runs (a small cost to that block, as a real run's validation pass
would hide it).

usage: PYTHONPATH=bindings/python python3 bench/stream_fmnist.py [--rounds 7] [--threads 1]
                                                                [--data DIR] [--jsonl FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import parml

ROOT = Path(__file__).resolve().parents[1]
BATCH = 128


def read_idx(path: Path) -> np.ndarray:
    data = gzip.open(path, "rb").read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def trainer(threads: int) -> parml.Trainer:
    model = parml.Sequential([parml.Flatten(), parml.Linear(784, 256), parml.ReLU(), parml.Linear(256, 10)], seed=1)
    return parml.Trainer(model, optimizer=parml.SGD(0.01, momentum=0.9), strategy=parml.Strategy(blas_threads=threads, seed=2))


def timed_epoch(t: parml.Trainer, data, y=None) -> float:
    t0 = time.perf_counter()
    h = t.fit(data, y, epochs=1, batch_size=BATCH, verbose=False)
    seconds = time.perf_counter() - t0
    assert np.isfinite(h.epochs[-1].train_loss)
    return 60000 / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--jsonl")
    a = ap.parse_args()
    d = Path(a.data)
    images, labels = d / "train-images-idx3-ubyte.gz", d / "train-labels-idx1-ubyte.gz"
    x = read_idx(images).astype(np.float32) / np.float32(255)
    y = read_idx(labels).astype(np.int64)
    with tempfile.TemporaryDirectory(prefix="parml-stream-bench-") as tmp:
        subprocess.run(
            [sys.executable, str(ROOT / "tools" / "make_shards.py"), tmp, "--idx", str(images), str(labels), "--rows-per-shard", "6000"],
            check=True, capture_output=True,
        )
        memory, stream, ratios = [], [], []
        with trainer(a.threads) as tm, trainer(a.threads) as ts, parml.Dataset(x, y) as dm, parml.open_shards(tmp, seed=3) as ds:
            timed_epoch(tm, dm)  # warm-up: first-touch allocations, the page cache
            timed_epoch(ts, ds)
            for _ in range(a.rounds):
                m = timed_epoch(tm, dm)
                s = timed_epoch(ts, ds)
                memory.append(m)
                stream.append(s)
                ratios.append(s / m)
                print(f"memory {m:9.0f}  stream {s:9.0f}  samples/s  ratio {s / m:.3f}", flush=True)
    row = {
        "name": f"stream_fmnist_npy_shards",
        "value": round(statistics.median(stream), 1),
        "unit": "samples/s",
        "baseline": f"the same training from memory (float32 array), same run, alternating epochs; MLP 784-256-10, batch {BATCH}, "
        f"{a.threads} BLAS thread(s); 10 uint8 .npy shards, 16384-row shuffle buffer; ratio per round "
        f"{min(ratios):.3f}-{max(ratios):.3f}",
        "baseline_value": round(statistics.median(memory), 1),
        "ratio": round(statistics.median(ratios), 3),
    }
    print(json.dumps(row))
    if a.jsonl:
        with open(a.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

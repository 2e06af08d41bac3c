#!/usr/bin/env python3
"""Label skew across data-parallel ranks (issue 22 item 5): Fashion-MNIST
when each of 2 ranks holds half of the classes, against the same ranks
holding an even mix, with gradients summed every step and with local SGD.

A step's global batch of 128 is laid out so that rank 0 (the first 64 rows)
and rank 1 (the last 64) get the rows the scenario gives them:
  iid     each rank draws from all ten classes;
  skewed  rank 0 draws only from classes 0-4, rank 1 only from 5-9.
Both feed each class equally over an epoch. Modes:
  sync    dp = 2, gradients summed every step (= serial training on the
          mixed batch, whatever the split);
  localH  local SGD, parameters averaged every H steps.
Prints one line per (scenario, mode) with test accuracy after each epoch.

usage: PYTHONPATH=bindings/python python3 bench/skew.py [--epochs 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

import parml


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path, "rb").read()
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def batches(x, y, skewed: bool, epoch: int, half: int = 64):
    """Global batches of 2·half rows: rank 0's rows then rank 1's."""
    rng = np.random.default_rng(100 + epoch)
    if skewed:
        parts = [np.flatnonzero(y < 5), np.flatnonzero(y >= 5)]
    else:
        order = rng.permutation(len(y))
        parts = [order[: len(y) // 2], order[len(y) // 2 :]]
    parts = [rng.permutation(p) for p in parts]
    steps = min(len(p) for p in parts) // half
    for s in range(steps):
        rows = np.concatenate([parts[0][s * half : (s + 1) * half], parts[1][s * half : (s + 1) * half]])
        yield x[rows], y[rows]


def run(x, y, xt, yt, skewed: bool, local_steps: int, epochs: int) -> list[float]:
    model = parml.Sequential([parml.Flatten(), parml.Linear(784, 256), parml.ReLU(), parml.Linear(256, 10)], seed=3)
    strategy = parml.Strategy(dp=2, seed=1, local_steps=local_steps, blas_threads=1)
    accuracies = []
    with model, parml.Trainer(model, optimizer=parml.SGD(0.05, momentum=0.9), strategy=strategy) as trainer:
        step = 0
        for epoch in range(epochs):
            for bx, by in batches(x, y, skewed, epoch):
                trainer.step(bx, by)
                step += 1
            # Evaluate on the averaged model: finish the local period first.
            while local_steps > 1 and step % local_steps:
                bx, by = next(batches(x, y, skewed, 1000 + step))
                trainer.step(bx, by)
                step += 1
            accuracies.append(trainer.evaluate(xt, yt, batch_size=1000).accuracy)
    return accuracies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    d = Path(a.data)
    x = read_idx(d / "train-images-idx3-ubyte.gz").astype(np.float32) / 255
    y = read_idx(d / "train-labels-idx1-ubyte.gz").astype(np.int64)
    xt = read_idx(d / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255
    yt = read_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    for local_steps in (1, 8, 32):
        for skewed in (False, True):
            accs = run(x, y, xt, yt, skewed, local_steps, a.epochs)
            mode = "sync" if local_steps == 1 else f"local{local_steps}"
            print(f"{'skewed' if skewed else 'iid':7} {mode:8} " + " ".join(f"{v:.4f}" for v in accs), flush=True)


if __name__ == "__main__":
    main()

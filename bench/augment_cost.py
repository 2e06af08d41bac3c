#!/usr/bin/env python3
"""Benchmark (not a test): what augmentation (random crop with zero padding
and horizontal flip, Dataset.set_augmentation) adds to parml_trainer_fit's
data path on Fashion-MNIST. One epoch of fit over the 60,000 training
images, batches of 64, with a model that costs next to nothing
(Flatten, Linear(784→10)), alternating a plain and an augmented dataset in
one process, --rounds times; prints each epoch's time, the medians and
their difference per batch.

usage: PYTHONPATH=bindings/python python3 bench/augment_cost.py [--rounds 4] [--crop-padding 2] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "python"))
import parml
from train_fashion_mnist import read_idx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--crop-padding", type=int, default=2)
    args = ap.parse_args()
    data = Path(args.data)
    x = (read_idx(data / "train-images-idx3-ubyte.gz").astype(np.float32) / 255).reshape(-1, 1, 28, 28)
    y = read_idx(data / "train-labels-idx1-ubyte.gz")
    with parml.Dataset(x, y) as plain, parml.Dataset(x, y) as augmented:
        augmented.set_augmentation(crop_padding=args.crop_padding, horizontal_flip=True)
        model = parml.Sequential([parml.Flatten(), parml.Linear(784, 10)], seed=1)
        with model, parml.Trainer(model, strategy=parml.Strategy(blas_threads=1)) as t:
            times: dict[str, list[float]] = {"plain": [], "augmented": []}
            for _ in range(args.rounds):
                for name, d in (("plain", plain), ("augmented", augmented)):
                    t0 = time.perf_counter()
                    t.fit(d, epochs=1, batch_size=64, verbose=False)
                    times[name].append(time.perf_counter() - t0)
    for name, v in times.items():
        print(f"{name}: epochs {' '.join(f'{s:.3f}' for s in v)} s, median {np.median(v):.3f} s")
    batches = -(-len(x) // 64)
    extra = (np.median(times["augmented"]) - np.median(times["plain"])) / batches
    print(f"augmentation (crop_padding {args.crop_padding}, flip): {extra * 1e6:.1f} us per batch of 64")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Trains an MLP on Fashion-MNIST through the parml Python package, printing
one line per epoch (a tqdm bar when tqdm is installed), then
"test accuracy: 0.NNNN". The same network and settings as
examples/train_fashion_mnist.c, and the same split: the last 10% of the
training set validates after each epoch; the test set is used once, at the
end.

usage: train_fashion_mnist.py [--data DIR] [--epochs N] [--dp N] [--zero S]
                              [--deterministic] [--batch-size N]
                              [--compression none|bf16|fp16] [--local-steps H]
                              [--precision fp32|bf16]

Run from the repository after `make lib` (the package finds
.build/release/libparml.so from its source tree), or with the package
installed and PARML_LIBRARY set:

    PYTHONPATH=bindings/python python3 examples/python/train_fashion_mnist.py --dp 2
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

try:
    import parml
except ImportError:  # not installed: use the package in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bindings" / "python"))
    import parml


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or plain) as a uint8 array."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                    help="directory of the four IDX files (Debian's dataset-fashion-mnist)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--dp", type=int, default=2, help="data-parallel ranks (threads)")
    ap.add_argument("--zero", type=int, default=0, help="ZeRO stage 0..3")
    ap.add_argument("--pp", type=int, default=1, help="pipeline stages (consecutive top-level layers)")
    ap.add_argument("--micro-batches", type=int, default=1, help="micro-batches per step")
    ap.add_argument("--schedule", choices=["1f1b", "gpipe"], default="1f1b", help="pipeline schedule")
    ap.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks (must divide 512)")
    ap.add_argument("--plan", action="store_true", help="print the execution plan before training")
    ap.add_argument("--trace", metavar="FILE", help="write a Chrome-trace timeline of the first epoch to FILE")
    ap.add_argument("--deterministic", action="store_true",
                    help="layout-invariant mode: any --dp/--pp/--zero gives serial training's bits")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--compression", choices=["none", "bf16", "fp16", "powersgd"], default="none",
                    help="the dp gradient sum's wire format (16-bit with error feedback; docs/communication.md)")
    ap.add_argument("--local-steps", type=int, default=1, help="local SGD: steps between parameter averages")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: Linear products on bf16 operands, float32 accumulation (docs/precision.md)")
    args = ap.parse_args()

    data = Path(args.data)
    # The last 10% of the training set is held out for validation (scaled
    # to [0, 1] as parml.load_idx does); the test set is touched once, at the end.
    images = read_idx(data / "train-images-idx3-ubyte.gz").astype(np.float32) / 255
    labels = read_idx(data / "train-labels-idx1-ubyte.gz")
    n_val = len(images) // 10
    train = parml.Dataset(images[:-n_val], labels[:-n_val])
    val = parml.Dataset(images[-n_val:], labels[-n_val:])
    del images, labels
    test = parml.load_idx(data / "t10k-images-idx3-ubyte.gz", data / "t10k-labels-idx1-ubyte.gz")

    # 784 -> 512 -> ReLU -> residual(LayerNorm, 512 -> 1024 -> GELU -> dropout -> 512) -> 10
    # (the residual body's two Linears are the pair tensor parallelism splits)
    model = parml.Sequential(
        [
            parml.Flatten(),
            parml.Linear(784, 512),
            parml.ReLU(),
            parml.Residual(
                [parml.LayerNorm(512), parml.Linear(512, 1024), parml.GELU(), parml.Dropout(0.1), parml.Linear(1024, 512)]
            ),
            parml.Linear(512, 10),
        ],
        seed=42,
    )
    steps_per_epoch = -(-len(train) // args.batch_size)
    optimizer = parml.AdamW(
        1e-3,
        weight_decay=1e-4,
        clip_grad_norm=5.0,
        schedule=parml.schedules.cosine(args.epochs * steps_per_epoch, min_lr=1e-5, warmup_steps=100),
    )
    strategy = parml.Strategy(
        dp=args.dp, pp=args.pp, tp=args.tp, micro_batches=args.micro_batches, schedule=args.schedule, zero=args.zero,
        deterministic=args.deterministic, seed=7, gradient_compression=args.compression, local_steps=args.local_steps,
        precision=args.precision,
    )
    print(f"parml {parml.library_version()}  OpenBLAS kernels: {parml.blas_core()}  "
          f"parameters: {model.num_params}  train {len(train)}  validation {len(val)} (held out of the "
          f"training set)  test {len(test)}  {strategy}")

    with model, train, val, test, parml.Trainer(model, "cross_entropy", optimizer, strategy) as trainer:
        if args.plan:
            print(trainer.plan())
        if args.trace:
            trainer.start_trace()
            trainer.fit(train, epochs=1, batch_size=args.batch_size, validation_data=val)
            trainer.write_trace(args.trace)
            trainer.stop_trace()
            print(f"wrote the first epoch's timeline to {args.trace}")
        remaining = args.epochs - (1 if args.trace else 0)
        if remaining > 0:
            trainer.fit(train, epochs=remaining, batch_size=args.batch_size, validation_data=val)
        result = trainer.evaluate(test, batch_size=1000)  # the one use of the test set
        memory = trainer.memory(0)
        print(f"rank 0 memory: {memory.total / 2**20:.1f} MiB "
              f"(optimizer state {memory.optimizer_bytes / 2**20:.1f} MiB)")
        print(f"test loss: {result.loss:.4f}")
        print(f"test accuracy: {result.accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

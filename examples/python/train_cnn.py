#!/usr/bin/env python3
"""Trains a small CNN on Fashion-MNIST through the parml Python package,
printing one line per epoch (a tqdm bar when tqdm is installed), then
"test accuracy: 0.NNNN". The same network, settings and split as
examples/train_cnn.c: images (N, 1, 28, 28) scaled to [0, 1], the last 10%
of the training set validates after each epoch, the test set is used after
training only; the model is saved, loaded back and run on the test set again.

usage: train_cnn.py [--data DIR] [--epochs N] [--train-images N] [--dp N]
                    [--save FILE] [--crop-padding N] [--flip]

Run from the repository after `make lib`:

    PYTHONPATH=bindings/python python3 examples/python/train_cnn.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    import parml
except ImportError:  # not installed: use the package in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bindings" / "python"))
    import parml

from train_fashion_mnist import read_idx  # the script beside this one


def cnn() -> parml.Sequential:
    """Two convolution blocks and a classifier (the C example's)."""
    return parml.Sequential(
        [
            parml.Conv2d(1, 32, 3, padding=1), parml.ReLU(), parml.MaxPool2d(2),  # (N, 32, 14, 14)
            parml.Conv2d(32, 64, 3, padding=1), parml.ReLU(), parml.MaxPool2d(2),  # (N, 64, 7, 7)
            parml.Flatten(),
            parml.Linear(64 * 7 * 7, 128), parml.ReLU(), parml.Dropout(0.3),
            parml.Linear(128, 10),
        ],
        seed=42,
    )


def images(path: Path) -> np.ndarray:
    """An IDX image file as float32 (N, 1, H, W) in [0, 1]: NCHW, one channel."""
    x = read_idx(path).astype(np.float32) / 255
    return x.reshape(len(x), 1, *x.shape[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                    help="directory of the four IDX files (Debian's dataset-fashion-mnist)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--train-images", type=int, default=0, help="train on the first N images only (a quick run)")
    ap.add_argument("--dp", type=int, default=2, help="data-parallel ranks (threads)")
    ap.add_argument("--save", default="build/cnn_fmnist_py.pb", help="where to save the trained model")
    ap.add_argument("--crop-padding", type=int, default=0,
                    help="augment training images: random crop of the image padded with N zeros on each side")
    ap.add_argument("--flip", action="store_true", help="augment training images: horizontal flip with probability 1/2")
    args = ap.parse_args()

    data = Path(args.data)
    x = images(data / "train-images-idx3-ubyte.gz")
    y = read_idx(data / "train-labels-idx1-ubyte.gz")
    n_val = len(x) // 10
    n_train = len(x) - n_val if args.train_images <= 0 else min(args.train_images, len(x) - n_val)
    train = parml.Dataset(x[:n_train], y[:n_train])
    if args.crop_padding or args.flip:  # fit transforms training batches only
        train.set_augmentation(crop_padding=args.crop_padding, horizontal_flip=args.flip)
    val = parml.Dataset(x[-n_val:], y[-n_val:])
    x_test = images(data / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(data / "t10k-labels-idx1-ubyte.gz")
    test = parml.Dataset(x_test, y_test)
    del x, y

    model = cnn()
    total = args.epochs * -(-n_train // 64)
    optimizer = parml.AdamW(
        1e-3, weight_decay=1e-4,
        schedule=parml.schedules.cosine(total, min_lr=1e-5, warmup_steps=total // 10 if total < 1000 else 100),
    )
    strategy = parml.Strategy(dp=args.dp, seed=7)
    print(f"parml {parml.library_version()}  parameters: {model.num_params}  train {n_train}  "
          f"validation {n_val} (held out of the training set)  test {len(test)}  {strategy}")

    with model, train, val, test, parml.Trainer(model, "cross_entropy", optimizer, strategy) as trainer:
        t0 = time.perf_counter()
        trainer.fit(train, epochs=args.epochs, batch_size=64, validation_data=val)
        print(f"trained {args.epochs} epochs in {time.perf_counter() - t0:.1f} s")
        result = trainer.evaluate(test, batch_size=500)
        print(f"test loss: {result.loss:.4f}")
        print(f"test accuracy: {result.accuracy:.4f}")
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        model.save(args.save)
    with parml.Model.load(args.save) as loaded:
        predicted = loaded.predict(x_test, batch_size=500).argmax(axis=1)
        print(f"test accuracy of {args.save} loaded back: {np.mean(predicted == y_test):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

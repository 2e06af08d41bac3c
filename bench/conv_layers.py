#!/usr/bin/env python3
"""Benchmark (not a test): one training step of a single convolution, parml
(im2col + OpenBLAS sgemm) against PyTorch eager (oneDNN), alternating in one
process so the machine's drift hits both alike. One thread each.

The two convolutions of issue 18's Fashion-MNIST CNN, batch 128:
  conv1  Conv2d(1→16, 3×3, padding 1) on (128, 1, 28, 28): the first layer,
         so no input gradient (neither side computes one)
  conv2  ReLU, then Conv2d(16→32, 3×3, padding 1) on (128, 16, 14, 14): the
         ReLU makes the convolution compute its input gradient, as it does
         inside a network
A step is forward, MSE loss against a fixed target, backward and a plain SGD
update (the same work on both sides; the convolution is nearly all of it).
Each round times --iters steps after --warmup for parml, then for PyTorch;
the figure is the median over --rounds rounds of the per-step time.

usage: OPENBLAS_NUM_THREADS=1 PYTHONPATH=bindings/python python3 bench/conv_layers.py [--rounds 5] [--iters 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import parml

SHAPES = {
    "conv1": dict(inp=(128, 1, 28, 28), cin=1, cout=16, relu=False),
    "conv2": dict(inp=(128, 16, 14, 14), cin=16, cout=32, relu=True),
}


def parml_step(spec):
    layers = ([parml.ReLU()] if spec["relu"] else []) + [parml.Conv2d(spec["cin"], spec["cout"], 3, padding=1)]
    model = parml.Sequential(layers, seed=1)
    trainer = parml.Trainer(model, loss="mse", optimizer=parml.SGD(1e-3), strategy=parml.Strategy(blas_threads=1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=spec["inp"]).astype(np.float32)
    n, _, h, w = spec["inp"]
    y = rng.normal(size=(n, spec["cout"], h, w)).astype(np.float32)
    return (model, trainer), lambda: trainer.step(x, y)


def torch_step(torch, spec):
    nn = torch.nn
    layers = ([nn.ReLU()] if spec["relu"] else []) + [nn.Conv2d(spec["cin"], spec["cout"], 3, padding=1)]
    net = nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    # As a layer inside a network, conv2 computes its input gradient: torch
    # computes one only for an input that requires it.
    x = torch.randn(spec["inp"], generator=g).requires_grad_(spec["relu"])
    n, _, h, w = spec["inp"]
    y = torch.randn((n, spec["cout"], h, w), generator=g)

    def step():
        opt.zero_grad()
        x.grad = None
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return net, step


def timed(step, warmup, iters):
    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - t) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
    print(f"batch 128, one thread, median of {args.rounds} rounds of {args.iters} steps (ms per step)")
    for name, spec in SHAPES.items():
        keep, mine = parml_step(spec)
        theirs = torch_step(torch, spec)[1] if torch else None
        ours, ref = [], []
        for _ in range(args.rounds):
            ours.append(timed(mine, args.warmup, args.iters))
            if theirs:
                ref.append(timed(theirs, args.warmup, args.iters))
        line = f"{name}: parml {1e3 * statistics.median(ours):7.2f}"
        if ref:
            m, r = statistics.median(ours), statistics.median(ref)
            line += f"   torch {torch.__version__} {1e3 * r:7.2f}   parml/torch {m / r:4.2f}"
        print(line, flush=True)
        keep[1].close()
        keep[0].close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark (not a test): one training step of a single convolution, parml's
two backends (im2col + OpenBLAS sgemm, and oneDNN) against PyTorch eager
(oneDNN), alternating in one process so the machine's drift hits all alike,
on one thread and on two (--threads).

The two convolutions of issue 18's Fashion-MNIST CNN, batch 128:
  conv1  Conv2d(1→16, 3×3, padding 1) on (128, 1, 28, 28): the first layer,
         so no input gradient (neither side computes one)
  conv2  ReLU, then Conv2d(16→32, 3×3, padding 1) on (128, 16, 14, 14): the
         ReLU makes the convolution compute its input gradient, as it does
         inside a network
A step is forward, MSE loss against a fixed target, backward and a plain SGD
update (the same work on both sides; the convolution is nearly all of it).
Each round times --iters steps after --warmup for parml im2col, parml
oneDNN, then PyTorch; the figure is the median over --rounds rounds of the
per-step time, and in brackets the lowest and highest round.

Both oneDNNs run OpenMP threads. parml's sleep between parallel regions
(its loader sets OMP_WAIT_POLICY=passive unless the user set it); PyTorch's
spin by default, and in one process they take the cores from the parml
step that follows (on 2 threads: oneDNN 46-79 ms a step instead of 10-12).
So this script sets OMP_WAIT_POLICY=passive for both unless it is set;
OMP_WAIT_POLICY=active measures both spinning.

usage: PYTHONPATH=bindings/python python3 bench/conv_layers.py [--rounds 5] [--iters 5] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import os

import numpy as np

import parml

SHAPES = {
    "conv1": dict(inp=(128, 1, 28, 28), cin=1, cout=16, relu=False),
    "conv2": dict(inp=(128, 16, 14, 14), cin=16, cout=32, relu=True),
}


def parml_step(spec, backend, threads):
    # A conv2d layer takes its backend from PARML_CONV when it is made (the
    # trainer makes its own copies of the layers too).
    os.environ["PARML_CONV"] = backend
    layers = ([parml.ReLU()] if spec["relu"] else []) + [parml.Conv2d(spec["cin"], spec["cout"], 3, padding=1)]
    model = parml.Sequential(layers, seed=1)
    trainer = parml.Trainer(model, loss="mse", optimizer=parml.SGD(1e-3), strategy=parml.Strategy(blas_threads=threads))
    del os.environ["PARML_CONV"]
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


def spread(times):
    return f"{1e3 * statistics.median(times):6.2f} ({1e3 * min(times):.2f}-{1e3 * max(times):.2f})"


def main():
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before torch loads its OpenMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    print(f"batch 128, median (lowest-highest) of {args.rounds} rounds of {args.iters} steps, ms per step; "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    for threads in [int(t) for t in args.threads.split(",")]:
        if torch:
            torch.set_num_threads(threads)
        for name, spec in SHAPES.items():
            runs = {b: parml_step(spec, b, threads) for b in ("im2col", "onednn")}
            theirs = torch_step(torch, spec)[1] if torch else None
            times = {"im2col": [], "onednn": [], "torch": []}
            for _ in range(args.rounds):
                for b, (_, step) in runs.items():
                    times[b].append(timed(step, args.warmup, args.iters))
                if theirs:
                    times["torch"].append(timed(theirs, args.warmup, args.iters))
            med = {k: statistics.median(v) for k, v in times.items() if v}
            line = f"{threads} thread(s) {name}: im2col {spread(times['im2col'])}  onednn {spread(times['onednn'])}"
            line += f"  im2col/onednn {med['im2col'] / med['onednn']:4.2f}"
            if theirs:
                line += f"  torch {torch.__version__} {spread(times['torch'])}  onednn/torch {med['onednn'] / med['torch']:4.2f}"
            print(line, flush=True)
            for (model, trainer), _ in runs.values():
                trainer.close()
                model.close()


if __name__ == "__main__":
    main()

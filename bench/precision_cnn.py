#!/usr/bin/env python3
"""Benchmark (not a test): the Fashion-MNIST CNN of bench/cnn_fmnist.py with
precision="bf16" against float32 (docs/precision.md): the two trainers stepped
in turn on one random batch of 128 images (one BLAS thread), 9 blocks of 5
steps each, medians of samples/s; and each one's loss after its 45 steps.

usage: PYTHONPATH=bindings/python python3 bench/precision_cnn.py"""
import time, numpy as np, parml
def make(p):
    m = parml.Sequential([
        parml.Conv2d(1, 16, 3, padding=1), parml.BatchNorm(16), parml.ReLU(), parml.MaxPool2d(2),
        parml.Conv2d(16, 32, 3, padding=1), parml.BatchNorm(32), parml.ReLU(), parml.MaxPool2d(2),
        parml.Flatten(), parml.Linear(32 * 7 * 7, 10)], seed=3)
    return m, parml.Trainer(m, optimizer=parml.SGD(0.05, momentum=0.9), strategy=parml.Strategy(blas_threads=1, precision=p))
rng = np.random.default_rng(0)
x = rng.random((128, 1, 28, 28), dtype=np.float32); y = (x.reshape(128, -1)[:, :392].mean(1) > x.reshape(128, -1)[:, 392:].mean(1)).astype(np.int64)
tr = {p: make(p) for p in ("fp32", "bf16")}
print({p: [l for l in t.plan().splitlines() if l.startswith("precision")][0][:60] for p, (m, t) in tr.items()})
res = {p: [] for p in tr}; loss = {}
for r in range(9):
    for p, (m, t) in tr.items():
        t0 = time.perf_counter()
        for _ in range(5): loss[p] = t.step(x, y)
        res[p].append(5 * 128 / (time.perf_counter() - t0))
med = {p: sorted(v)[len(v) // 2] for p, v in res.items()}
print("samples/s", {p: round(v) for p, v in med.items()}, "ratio bf16/fp32", round(med["bf16"] / med["fp32"], 3), "loss after 45 steps", loss)

#!/usr/bin/env python3
"""Measurement (not a test): the page-fault tax of ZeRO-2/3's gradient
buckets. Trainers of one model under ZeRO 1, 2 and 3 (dp 2, threads
backend, SGD, default mode), stepped in turn in one process so every stage
sees the same machine drift; per stage the median wall time of a step, its
ratio to ZeRO-1's in the same rounds, the process's CPU time per step (user
+ system, every thread) and its ratio, and the minor page faults the
process took per step (getrusage: every rank's thread and the BLAS
threads); and parml_trainer_memory's gradient bytes for both ranks.

Models: "mlp" is the 784-1024-1024-10 MLP, batch 128 (one 4 MiB bucket spans
most of it, so handing pages back lowers no rank's peak); "gpt" is
nanoGPT's 6-layer Shakespeare shape (n_embd 384, 6 heads, tied head,
vocabulary 65) at context 32, batch 8 (a bucket per block or two: handing
pages back lowers the peak). With --micro-batches M > 1, ZeRO-2/3 reduce
each micro-batch's buckets into the shard where the pages go back.

usage: PYTHONPATH=bindings/python PARML_LIBRARY=.build/release/libparml.so \\
       python3 bench/zero_page_faults.py [--model mlp|gpt] [--rounds N] [--steps N] [--micro-batches M]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np

import parml


def mlp() -> parml.Model:
    return parml.Sequential(
        [parml.Linear(784, 1024), parml.ReLU(), parml.Linear(1024, 1024), parml.ReLU(), parml.Linear(1024, 10)], seed=1)


def gpt() -> parml.Model:
    C, T, V = 384, 32, 65
    layers = [parml.Embedding(V, C, init_std=0.02), parml.PositionEmbedding(T, C, init_std=0.02)]
    for _ in range(6):
        layers.append(parml.Residual([parml.LayerNorm(C), parml.CausalSelfAttention(C, 6)]))
        layers.append(parml.Residual([parml.LayerNorm(C), parml.Linear(C, 4 * C), parml.GELU(), parml.Linear(4 * C, C)]))
    layers += [parml.LayerNorm(C), parml.TiedClassifier(V, C)]
    return parml.Sequential(layers, seed=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp", choices=["mlp", "gpt"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="steps per stage per round")
    ap.add_argument("--micro-batches", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    if a.model == "mlp":
        x = rng.standard_normal((128, 784)).astype(np.float32)
        y = rng.integers(0, 10, size=128).astype(np.int32)
    else:
        ids = rng.integers(0, 65, size=(8, 33)).astype(np.int32)
        x, y = ids[:, :-1], ids[:, 1:]
    stages = [1, 2, 3]
    trainers = {}
    for z in stages:
        m = mlp() if a.model == "mlp" else gpt()
        st = parml.Strategy(dp=2, zero=z, micro_batches=a.micro_batches)
        trainers[z] = (m, parml.Trainer(m, optimizer=parml.SGD(0.01), strategy=st))
        trainers[z][1].step(x, y)  # warm: buffers and pages
    ms = {z: [] for z in stages}
    cpu = {z: [] for z in stages}
    faults = {z: [] for z in stages}
    for _ in range(a.rounds):
        for z in stages:
            t = trainers[z][1]
            u0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            for _ in range(a.steps):
                t.step(x, y)
            ms[z].append((time.perf_counter() - t0) / a.steps * 1e3)
            u1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu[z].append((u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime) / a.steps * 1e3)
            faults[z].append((u1.ru_minflt - u0.ru_minflt) / a.steps)
    out = {"model": a.model, "micro_batches": a.micro_batches, "rounds": a.rounds, "steps": a.steps, "stages": {}}
    for z in stages:
        ratios = [b / c for b, c in zip(ms[z], ms[1])]
        out["stages"][f"zero{z}"] = {
            "step_ms": round(statistics.median(ms[z]), 3),
            "ratio_to_zero1": round(statistics.median(ratios), 3),
            "cpu_ms": round(statistics.median(cpu[z]), 3),
            "cpu_ratio_to_zero1": round(statistics.median([b / c for b, c in zip(cpu[z], cpu[1])]), 3),
            "minor_faults_per_step": round(statistics.median(faults[z]), 1),
            "gradient_bytes": [trainers[z][1].memory(r).gradient_bytes for r in range(2)],
        }
    for m, t in trainers.values():
        t.close()
        m.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

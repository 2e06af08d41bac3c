#!/usr/bin/env python3
"""Measurement (not a test): what each ZeRO stage keeps per rank on
nanoGPT's default Shakespeare model (6 layers, 6 heads, n_embd 384,
context 256, head tied to the token embedding; about 10.8 M parameters),
data parallel over 2 ranks, AdamW, steps of batch 16 (--steps, default 2).

For ZeRO 0-3 it reports, per rank, parml_trainer_memory's parameter,
gradient and optimizer bytes (and the 1/dp ideal of the model's bytes,
ideal_bytes), and the resident memory the process grew by since before
the model was built: at its peak (grown_rss_bytes) and between steps,
after the last one (rss_after_steps_bytes); and the median wall time of
the steps after the first (step_seconds; a loaded machine makes it noisy).
With --backend mpi each rank is its own process, so those figures are one
rank's (ZeRO-3 there keeps only its shard of the parameters between steps
and gathers each layer before use); with threads both ranks share one
process. Each stage runs in fresh processes.

usage: PYTHONPATH=bindings/python python3 bench/zero_memory.py [--backend threads|mpi] [--steps N]
(mpi: each stage under mpirun -np 2, one line per rank)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import parml

L, H, C, T, B, V = 6, 6, 384, 256, 16, 65


def status_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib() -> int:
    return status_kib("VmRSS")


def model() -> parml.Model:
    layers = [parml.Embedding(V, C, init_std=0.02), parml.PositionEmbedding(T, C, init_std=0.02)]
    for _ in range(L):
        layers.append(parml.Residual([parml.LayerNorm(C), parml.CausalSelfAttention(C, H)]))
        layers.append(parml.Residual([parml.LayerNorm(C), parml.Linear(C, 4 * C), parml.GELU(), parml.Linear(4 * C, C)]))
    layers += [parml.LayerNorm(C), parml.TiedClassifier(V, C)]
    return parml.Sequential(layers, seed=1)


def one(zero: int, backend: str, steps: int) -> dict:
    before = rss_kib()
    m = model()
    opt = parml.AdamW(1e-3, betas=(0.9, 0.99), weight_decay=0.1, decay_by_kind=True, clip_grad_norm=1.0)
    with m, parml.Trainer(m, optimizer=opt, strategy=parml.Strategy(dp=2, zero=zero, backend=backend)) as t:
        rng = np.random.default_rng(0)
        seconds = []
        for _ in range(steps):
            ids = rng.integers(0, V, size=(B, T + 1)).astype(np.int32)
            t0 = time.perf_counter()
            t.step(ids[:, :-1], ids[:, 1:])
            seconds.append(time.perf_counter() - t0)
        rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
        r = t.memory(rank)
        n = m.num_params
        # Between steps: activation buffers stay, a bucket in flight does
        # not, and under MPI ZeRO-3 only the shard of the parameters.
        after = rss_kib()
        partial = not t.params_whole
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "zero": zero, "backend": backend, "rank": rank, "parameters": n,
        "parameter_bytes": r.parameter_bytes, "gradient_bytes": r.gradient_bytes, "optimizer_bytes": r.optimizer_bytes,
        "scratch_bytes": r.scratch_bytes, "activation_bytes": r.activation_bytes,
        "whole_parameter_bytes": 4 * n, "ideal_bytes": 4 * n // 2, "partial_between_steps": partial,
        "grown_rss_bytes": (peak - before) * 1024, "rss_after_steps_bytes": (after - before) * 1024,
        "step_seconds": statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="threads", choices=["threads", "mpi"])
    p.add_argument("--zero", type=int, default=None, help="one stage (a child run); default: all four, each in its own process(es)")
    p.add_argument("--steps", type=int, default=2, help="steps per stage (the time is the median of all but the first)")
    a = p.parse_args()
    if a.zero is not None:
        print(json.dumps(one(a.zero, a.backend, a.steps)), flush=True)
        if a.backend == "mpi":
            parml._capi.parml_mpi_finalize()
        return
    # A process (or an mpirun of two) per stage: peak RSS is per process.
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for z in range(4):
        cmd = [sys.executable, __file__, "--backend", a.backend, "--zero", str(z), "--steps", str(a.steps)]
        if a.backend == "mpi":
            cmd = ["mpirun", "-np", "2", "--oversubscribe"] + cmd
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Measurement (not a test): pipeline stages cut by parameter count (parml
before issue 17's balance by cost) against the cut by the flops the layers
state (LayerCost.swift), on nanoGPT's default Shakespeare model (6 layers,
6 heads, n_embd 384, context 256, batch 16; the token embedding on the
first stage and the tied classifier on the last), pp stages, m micro-batches,
1F1B. The vocabulary is 65 (characters) by default; --vocab 50304 is GPT-2's.

For each cut it trains a few steps with the trace on and reports, per stage,
the layers it holds and its busy time (forward + backward of its layers,
from the trace, median over the measured steps), the slowest stage over the
mean (1 is perfect balance), and the step time.

usage: PYTHONPATH=bindings/python python3 bench/stage_balance.py [--pp 2] [--vocab 65] [--steps 2] [--rounds 3]
(the two cuts alternate, --rounds times; medians)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time

import numpy as np

import parml

L, H, C, T, B = 6, 6, 384, 256, 16


def layers(vocab: int) -> list:
    out = [parml.Embedding(vocab, C, init_std=0.02), parml.PositionEmbedding(T, C, init_std=0.02)]
    for _ in range(L):
        out.append(parml.Residual([parml.LayerNorm(C), parml.CausalSelfAttention(C, H)]))
        out.append(parml.Residual([parml.LayerNorm(C), parml.Linear(C, 4 * C), parml.GELU(), parml.Linear(4 * C, C)]))
    return out + [parml.LayerNorm(C), parml.TiedClassifier(vocab, C)]


def parameter_counts(vocab: int) -> list[int]:
    """Arena floats per top-level layer (the tied head's copy counts, as the
    trainer's parameter-count balance counted it)."""
    m = parml.Sequential(layers(vocab), seed=1)
    counts = [0] * (2 + 2 * L + 2)
    for name, shape in m.parameter_shapes.items():
        counts[int(name.split(".")[0])] += int(np.prod(shape))
    counts[-1] += vocab * C
    m.close()
    return counts


def balanced(costs: list[int], stages: int) -> list[range]:
    """StagePartition.balanced: minimise the largest stage's Σ(cost + 1), ties to the later cut."""
    n, inf = len(costs), float("inf")
    prefix = [0]
    for c in costs:
        prefix.append(prefix[-1] + c + 1)
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0
    for k in range(1, stages + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                if best[k - 1][j] == inf:
                    continue
                v = max(best[k - 1][j], prefix[i] - prefix[j])
                if v <= best[k][i]:
                    best[k][i], cut[k][i] = v, j
    bounds, end = [], n
    for k in range(stages, 0, -1):
        bounds.append(range(cut[k][end], end))
        end = cut[k][end]
    return bounds[::-1]


def run(vocab: int, pp: int, m: int, steps: int, starts: list[int] | None) -> dict:
    ls = layers(vocab)
    if starts:
        for s in sorted(starts, reverse=True):
            ls.insert(s, parml.StageBoundary())
    model = parml.Sequential(ls, seed=1)
    opt = parml.AdamW(1e-3, betas=(0.9, 0.99), weight_decay=0.1, decay_by_kind=True)
    strategy = parml.Strategy(pp=pp, micro_batches=m, schedule="1f1b")
    rng = np.random.default_rng(0)
    with model, parml.Trainer(model, optimizer=opt, strategy=strategy) as t:
        plan = t.plan()
        batches = [rng.integers(0, vocab, size=(B, T + 1)).astype(np.int32) for _ in range(steps + 1)]
        t.step(batches[0][:, :-1], batches[0][:, 1:])  # warm-up: buffers sized
        t.start_trace()
        t0 = time.perf_counter()
        for b in batches[1:]:
            t.step(b[:, :-1], b[:, 1:])
        step_s = (time.perf_counter() - t0) / steps
        t.stop_trace()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            t.write_trace(path)
            with open(path) as f:
                events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    busy = {}  # (stage, step) -> µs of forward + backward
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in ("forward", "backward"):
            key = (e["args"]["stage"], e["args"]["step"])
            busy[key] = busy.get(key, 0) + e["dur"]
    per_stage = [statistics.median(v for (s, _), v in busy.items() if s == stage) / 1e3 for stage in range(pp)]
    cut = []
    for line in plan.splitlines():
        line = line.strip()
        if line.startswith("stage ") and ": layers " in line:
            ids = [int(x) for x in re.findall(r"(?:layers |, )(\d+):", line)]
            cut.append(f"layers {ids[0]}..{ids[-1]}")
    cut = cut[:pp]
    return {"busy_ms": per_stage, "imbalance": max(per_stage) / statistics.mean(per_stage), "step_ms": step_s * 1e3, "stages": cut}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pp", type=int, default=2)
    p.add_argument("--micro-batches", type=int, default=4)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    by_params = balanced(parameter_counts(a.vocab), a.pp)
    runs: dict[str, list[dict]] = {"by parameter count": [], "by stated flops": []}
    for _ in range(a.rounds):  # alternating, so that a change in the machine's load hits both
        runs["by parameter count"].append(run(a.vocab, a.pp, a.micro_batches, a.steps, [r.start for r in by_params[1:]]))
        runs["by stated flops"].append(run(a.vocab, a.pp, a.micro_batches, a.steps, None))
    for name, rs in runs.items():
        imbalance = sorted(r["imbalance"] for r in rs)
        steps = sorted(r["step_ms"] for r in rs)
        print(f"{name}: slowest stage / mean = {statistics.median(imbalance):.3f} (median of {len(rs)}: "
              + ", ".join(f"{x:.3f}" for x in imbalance) + f"); step {statistics.median(steps):.0f} ms "
              + "(" + ", ".join(f"{x:.0f}" for x in steps) + ")")
        for stage in range(a.pp):
            ms = statistics.median(r["busy_ms"][stage] for r in rs)
            print(f"  stage {stage}: {rs[0]['stages'][stage]:16s} {ms:7.1f} ms busy per step (median)")

if __name__ == "__main__":
    main()

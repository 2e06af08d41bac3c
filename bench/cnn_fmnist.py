#!/usr/bin/env python3
"""Benchmark (not a test): one training step of issue 18's Fashion-MNIST
CNN, parml against PyTorch eager (oneDNN convolutions inside), alternating
in one process so the machine's drift hits both alike.

The network (the issue's): Conv(1→16, 3×3, pad 1) BN ReLU MaxPool2 ·
Conv(16→32, 3×3, pad 1) BN ReLU MaxPool2 · Flatten · Linear(1568→10);
cross-entropy; SGD, lr 0.01, momentum 0.9; batch 128 of (1, 28, 28) images
(random values: the step's cost does not depend on them).
One step = forward, loss, backward, update (PyTorch: zero_grad(set_to_none)
first, as its examples do).

For each thread count (OpenBLAS threads for parml, torch.set_num_threads for
PyTorch), rounds alternate: a parml block, a PyTorch block; each block times
--iters steps after --warmup; the figure is the median over the blocks of
samples/s, and the spread is the range of the per-round ratios.
ParmlBenchCNN (bench/cnn) measures the same step against its convolutions
alone and under dp = 2.

PyTorch's OpenMP threads spin between parallel regions by default and take
the cores from the parml block that follows (parml's oneDNN threads sleep);
as bench/conv_layers.py does, this script sets OMP_WAIT_POLICY=passive for
both unless it is set.

usage: PYTHONPATH=bindings/python python3 bench/cnn_fmnist.py [--rounds 9] [--iters 10] [--threads 1 2]
                                                              [--jsonl FILE] [--bf16] [--clock wall|thread]
--jsonl appends cnn_fmnist_b128_t1/_t2 (samples/s against PyTorch's, same
run) for bench/results.json (make bench); without PyTorch it appends nothing.

--bf16 (issue 23, docs/precision.md): per round, blocks of parml float32,
parml precision="bf16" and PyTorch under torch.autocast("cpu",
dtype=torch.bfloat16) (convolutions and the Linear in bf16, BatchNorm and
the loss in float32, float32 weights and SGD). --jsonl then appends
cnn_fmnist_b128_t1_bf16/_t2_bf16 (parml bf16 against parml float32, same
run; written without PyTorch too) and cnn_fmnist_b128_t1_bf16_vs_torch/...
(against PyTorch's autocast; not where the plan says bf16 fell back to
float32, a CPU without AVX512-BF16, whose first entry then says so).

--clock thread (--threads 1 only) times each block by the calling thread's
CPU time instead of the wall clock (bench/same_run.py says why that covers
both engines' steps): for a machine that other jobs load.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np

import parml
import same_run  # bench/same_run.py, beside this script

BATCH = 128


def parml_cnn(threads: int, precision: str = "fp32"):
    model = parml.Sequential(
        [
            parml.Conv2d(1, 16, 3, padding=1), parml.BatchNorm(16), parml.ReLU(), parml.MaxPool2d(2),
            parml.Conv2d(16, 32, 3, padding=1), parml.BatchNorm(32), parml.ReLU(), parml.MaxPool2d(2),
            parml.Flatten(), parml.Linear(32 * 7 * 7, 10),
        ],
        seed=1,
    )
    trainer = parml.Trainer(model, optimizer=parml.SGD(0.01, momentum=0.9), strategy=parml.Strategy(blas_threads=threads, precision=precision))
    return model, trainer


def torch_cnn(torch):
    nn = torch.nn
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def batches(n, seed):
    rng = np.random.default_rng(seed)
    return [(rng.random((BATCH, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, size=BATCH)) for _ in range(n)]


def block(step, data, warmup, iters, clock=time.perf_counter):
    """Samples/s of `iters` steps after `warmup` untimed ones."""
    for x, y in data[:warmup]:
        step(x, y)
    t0 = clock()
    for x, y in data[warmup : warmup + iters]:
        step(x, y)
    return BATCH * iters / (clock() - t0)


def torch_step(torch, model, opt, bf16=False):
    F = torch.nn.functional

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def ratio_range(ours, theirs):
    ratios = [o / t for o, t in zip(ours, theirs)]
    return round(min(ratios), 3), round(max(ratios), 3)


def compare_fp32(torch, data, a, clock):
    """parml against PyTorch eager, both float32, per thread count."""
    rows, lines = [], []
    for threads in a.threads:
        model, trainer = parml_cnn(threads)
        ours, theirs = [], []
        if torch is not None:
            torch.set_num_threads(threads)
            step = torch_step(torch, *torch_cnn(torch))
            tdata = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
        for _ in range(a.rounds):
            ours.append(block(trainer.step, data, a.warmup, a.iters, clock))
            if torch is not None:
                theirs.append(block(step, tdata, a.warmup, a.iters, clock))
        trainer.close()
        model.close()
        row = {"name": f"cnn_fmnist_b128_t{threads}", "parml_samples_per_s": round(statistics.median(ours), 1)}
        if theirs:
            row |= {"torch_samples_per_s": round(statistics.median(theirs), 1),
                    "ratio": round(statistics.median(ours) / statistics.median(theirs), 3),
                    "ratio_range": ratio_range(ours, theirs)}
            lo, hi = row["ratio_range"]
            lines.append({
                "name": row["name"], "value": row["parml_samples_per_s"], "unit": "samples/s",
                "baseline": f"PyTorch {torch.__version__} eager, same model and step, BatchNorm after each convolution "
                            f"(same run, alternating, {a.clock} clock, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
                            f"ratio per round {lo}-{hi})",
                "baseline_value": row["torch_samples_per_s"], "ratio": row["ratio"],
            })
        rows.append(row)
        print(json.dumps(row))
    return lines


def compare_bf16(torch, data, a, clock):
    """parml bf16 against parml float32 and PyTorch's bf16 autocast, per thread count."""
    lines = []
    for threads in a.threads:
        engines = {p: parml_cnn(threads, p) for p in ("fp32", "bf16")}
        plan = same_run.precision_line(engines["bf16"][1])
        fallback = same_run.fell_back(plan)
        with_torch = torch is not None and not fallback
        got = {"fp32": [], "bf16": [], "torch_bf16": []}
        if with_torch:
            torch.set_num_threads(threads)
            step = torch_step(torch, *torch_cnn(torch), bf16=True)
            tdata = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
        for _ in range(a.rounds):
            for p, (_, trainer) in engines.items():
                got[p].append(block(trainer.step, data, a.warmup, a.iters, clock))
            if with_torch:
                got["torch_bf16"].append(block(step, tdata, a.warmup, a.iters, clock))
        for model, trainer in engines.values():
            trainer.close()
            model.close()
        med = {k: statistics.median(v) for k, v in got.items() if v}
        name = f"cnn_fmnist_b128_t{threads}_bf16"
        lo, hi = ratio_range(got["bf16"], got["fp32"])
        row = {"name": name, "plan": plan, "parml_bf16_samples_per_s": round(med["bf16"], 1),
               "parml_fp32_samples_per_s": round(med["fp32"], 1), "bf16_over_fp32": round(med["bf16"] / med["fp32"], 3),
               "bf16_over_fp32_range": [lo, hi]}
        lines.append({
            "name": name, "value": row["parml_bf16_samples_per_s"], "unit": "samples/s",
            "baseline": f"parml float32, same model and step (same run, alternating, {a.clock} clock; ratio per round {lo}-{hi})"
                        + ("; bf16 fell back to float32 on this CPU (the plan's precision line)" if fallback else ""),
            "baseline_value": row["parml_fp32_samples_per_s"], "ratio": row["bf16_over_fp32"],
        })
        if "torch_bf16" in med:
            lo, hi = ratio_range(got["bf16"], got["torch_bf16"])
            row |= {"torch_bf16_samples_per_s": round(med["torch_bf16"], 1), "vs_torch_bf16": round(med["bf16"] / med["torch_bf16"], 3),
                    "vs_torch_bf16_range": [lo, hi]}
            lines.append({
                "name": name + "_vs_torch", "value": row["parml_bf16_samples_per_s"], "unit": "samples/s",
                "baseline": f"PyTorch {torch.__version__} eager under torch.autocast(cpu, bfloat16), same model and step "
                            f"(same run, alternating, {a.clock} clock, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; ratio per round {lo}-{hi})",
                "baseline_value": row["torch_bf16_samples_per_s"], "ratio": row["vs_torch_bf16"],
            })
        print(json.dumps(row))
    return lines


def main():
    ap = same_run.parser(rounds=9, iters=10, warmup=3)
    ap.add_argument("--bf16", action="store_true", help="parml bf16 against parml float32 and PyTorch's bf16 autocast")
    a = ap.parse_args()
    clock = same_run.clock(ap, a)
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before torch loads its OpenMP
    torch = same_run.optional_torch()
    data = batches(a.warmup + a.iters, seed=2)
    lines = (compare_bf16 if a.bf16 else compare_fp32)(torch, data, a, clock)
    if a.jsonl:
        with open(a.jsonl, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()

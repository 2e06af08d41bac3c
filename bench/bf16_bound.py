#!/usr/bin/env python3
"""Benchmark (not a test): the two-thread bf16 MLP step (issue 23's
mlp_b512_t2_bf16: 784-1024-1024-10, batch 512, SGD momentum 0.9) of parml
and of PyTorch's bf16 autocast against the step's bf16 products alone, all
in one process, in alternating blocks so that drift hits them alike.

Blocks per round, each the mean of --steps steps after one untimed:
  parml      parml.Trainer, precision="bf16", blas_threads=THREADS
  torch      PyTorch eager, torch.autocast("cpu", dtype=torch.bfloat16)
             (../shared/peers/torch_bf16_mlp.py's step)
  bound      the step's oneDNN bf16 matmuls alone, parml's shim on the
             system oneDNN 2.x, each product on THREADS OpenMP threads
             (bench/bf16_bound.c through build/libbf16_bound.so)
  bound_split the same products cut in two by rows, halves on two threads
             with one-thread plans (THREADS = 2 only)
  bound_t1   the same products on one thread; its figure is reported times
             THREADS (perfect scaling: bound_t1xN)
  torch_mm   PyTorch's own bf16 matmuls alone (torch.matmul on bf16 tensors:
             its own kernels, PyTorch 2.13 bundles oneDNN 3.12), the same
             eight products on bf16 tensors (x·Wᵀ, dyᵀ·x, dy·W), THREADS threads
The figure is the median over rounds of samples/s; ratios are to `bound`.
--per-product adds each of the eight products' GFLOP/s on its own (the
bound's plans, --steps runs each, median over rounds), to set against
the CPU's VDPBF16PS peak (build/bf16_peak).
--clock thread (with --threads 1) times every block by the calling
thread's CPU time (all of them then run on that thread), so that on a
loaded machine the time the thread waited for a CPU is left out; the
default is the wall clock. --clock process (any thread count) times by
the CPU time of all the process's threads: the work a block did on both
cores, waits that spin included (parml's workers spin up to 50 µs and
yield up to 2 ms between jobs, bound_split's helper spins; OpenMP threads
sleep here), so on a loaded machine it shows whether two threads add
work, not how long a quiet machine's step takes.
PyTorch's OpenMP threads sleep between parallel regions here
(OMP_WAIT_POLICY=passive unless set) so that they leave the cores to the
blocks that follow.

usage: make build/libbf16_bound.so && PYTHONPATH=bindings/python python3 bench/bf16_bound.py [--threads 2] [--batch 512] [--rounds 9] [--steps 20]
                                                                                           [--clock wall|thread|process]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import time

import numpy as np

import parml

DIMS = (784, 1024, 1024, 10)


def load_bound(path):
    lib = ctypes.CDLL(path)
    lib.bf16_bound_create_split.restype = ctypes.c_void_p
    lib.bf16_bound_create_split.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int, ctypes.c_int64, ctypes.c_int, ctypes.c_int,
                                            ctypes.c_char_p, ctypes.c_size_t]
    lib.bf16_bound_step_seconds.restype = ctypes.c_double
    lib.bf16_bound_step_seconds.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.bf16_bound_step_flop.restype = ctypes.c_double
    lib.bf16_bound_step_flop.argtypes = [ctypes.c_void_p]
    lib.bf16_bound_impl.restype = ctypes.c_char_p
    lib.bf16_bound_impl.argtypes = [ctypes.c_void_p]
    lib.bf16_bound_free.argtypes = [ctypes.c_void_p]
    lib.bf16_bound_products.argtypes = [ctypes.c_void_p]
    lib.bf16_bound_product_flop.restype = ctypes.c_double
    lib.bf16_bound_product_flop.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.bf16_bound_product_run.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    return lib


def make_bound(lib, batch, threads, split):
    dims = (ctypes.c_int64 * len(DIMS))(*DIMS)
    err = ctypes.create_string_buffer(512)
    b = lib.bf16_bound_create_split(dims, len(DIMS), batch, threads, split, err, len(err))
    if not b:
        raise SystemExit(f"bf16 bound: {err.value.decode()}")
    return b


def parml_step(batch, threads):
    layers = []
    for i in range(len(DIMS) - 1):
        layers.append(parml.Linear(DIMS[i], DIMS[i + 1]))
        if i + 2 < len(DIMS):
            layers.append(parml.ReLU())
    model = parml.Sequential(layers, seed=0)
    trainer = parml.Trainer(model, optimizer=parml.SGD(0.01, momentum=0.9),
                            strategy=parml.Strategy(blas_threads=threads, precision="bf16"))
    rng = np.random.default_rng(0)
    x = rng.random((batch, DIMS[0]), dtype=np.float32)
    y = rng.integers(0, DIMS[-1], size=batch)
    return (model, trainer), lambda: trainer.step(x, y)


def torch_step(torch, batch):
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(batch, 784), torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()

    return step


def torch_products(torch, batch):
    """The step's eight products on bf16 tensors, as autocast runs them."""
    bf = torch.bfloat16
    w = [torch.rand(DIMS[i + 1], DIMS[i]).to(bf) for i in range(len(DIMS) - 1)]
    act = [torch.rand(batch, d).to(bf) for d in DIMS]
    grad = [torch.rand(batch, d).to(bf) for d in DIMS]

    def step():
        for i in range(len(w)):
            torch.matmul(act[i], w[i].t())
        for i in reversed(range(len(w))):
            torch.matmul(grad[i + 1].t(), act[i])
            if i > 0:
                torch.matmul(grad[i + 1], w[i])

    return step


def block(step, steps, clock):
    step()
    t0 = clock()
    for _ in range(steps):
        step()
    return (clock() - t0) / steps


def bound_block(lib, bound, steps, clock):
    """The bound's own call runs one untimed step, then `steps`: timed here by `clock` over all."""
    t0 = clock()
    if lib.bf16_bound_step_seconds(bound, steps) < 0:
        raise SystemExit("bf16 bound: oneDNN failed")
    return (clock() - t0) / (steps + 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--library", default="build/libbf16_bound.so")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--clock", choices=["wall", "thread", "process"], default="wall")
    ap.add_argument("--per-product", action="store_true")
    a = ap.parse_args()
    if a.clock == "thread" and a.threads != 1:
        ap.error("--clock thread times the calling thread only: use it with --threads 1")
    clock = {"wall": time.perf_counter, "thread": time.thread_time, "process": time.process_time}[a.clock]
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before either OpenMP loads
    lib = load_bound(os.path.abspath(a.library))
    torch = None
    if not a.no_torch:
        try:
            import torch
            torch.set_num_threads(a.threads)
        except ImportError:
            print("PyTorch is not installed: parml and the bound only")
    keep, parml_fn = parml_step(a.batch, a.threads)
    bounds = {"bound": make_bound(lib, a.batch, a.threads, 0)}
    if a.threads == 2:
        bounds["bound_split"] = make_bound(lib, a.batch, a.threads, 1)
    if a.threads > 1:
        bounds["bound_t1"] = make_bound(lib, a.batch, 1, 0)
    flop = lib.bf16_bound_step_flop(bounds["bound"])
    blocks = {"parml": parml_fn} | {name: None for name in bounds}
    if torch is not None:
        blocks["torch"] = torch_step(torch, a.batch)
        blocks["torch_mm"] = torch_products(torch, a.batch)
    times = {k: [] for k in blocks}
    for _ in range(a.rounds):
        for name, fn in blocks.items():
            if name in bounds:
                times[name].append(bound_block(lib, bounds[name], a.steps, clock))
            else:
                times[name].append(block(fn, a.steps, clock))
    med = {k: statistics.median(v) for k, v in times.items()}
    if "bound_t1" in med:
        med[f"bound_t1x{a.threads}"] = med.pop("bound_t1") / a.threads
    row = {"threads": a.threads, "batch": a.batch, "clock": a.clock, "rounds": a.rounds, "steps": a.steps,
           "impl": lib.bf16_bound_impl(bounds["bound"]).decode(), "step_gflop": round(flop / 1e9, 3),
           "load_before": os.getloadavg()[0]}
    for k, t in med.items():
        row[f"{k}_samples_per_s"] = round(a.batch / t, 1)
    for k, t in med.items():
        if k != "bound":
            # the bound's time over k's: k's samples/s as a share of the bound's
            row[f"{k}_of_bound"] = round(med["bound"] / t, 3)
    row["bound_gflops"] = round(flop / med["bound"] / 1e9, 1)
    if "torch_mm" in med:
        row["torch_mm_gflops"] = round(flop / med["torch_mm"] / 1e9, 1)
    if a.per_product:
        b = bounds["bound"]
        per = []
        for i in range(lib.bf16_bound_products(b)):
            ts = []
            for _ in range(a.rounds):
                lib.bf16_bound_product_run(b, i, 1)
                t0 = clock()
                if lib.bf16_bound_product_run(b, i, a.steps) != 0:
                    raise SystemExit("bf16 bound: oneDNN failed")
                ts.append((clock() - t0) / a.steps)
            per.append(round(lib.bf16_bound_product_flop(b, i) / statistics.median(ts) / 1e9, 1))
        row["per_product_gflops"] = per
    for b in bounds.values():
        lib.bf16_bound_free(b)
    keep[1].close()
    keep[0].close()
    print(json.dumps(row))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark (not a test): training from Python through the parml package
against the same training from C, timed on the same machine in alternating
blocks so drift hits both alike.

The case is bench/bench.c's MLP, 784-1024-1024-10 with ReLU, SGD momentum
0.9, batch 128, on synthetic data (N samples, labels i % 10), the strategy's
default layout (serial, BLAS threads = cores). Three measurements per side:

  fit_dataset  trainer.fit on a prebuilt Dataset, 1 epoch, no shuffle
               (Python: Trainer.fit with its progress callback and History;
               C: parml_trainer_fit with a progress callback)
  fit_arrays   Python only: Trainer.fit(x, y) from numpy arrays, which builds
               (and frees) a Dataset per call; against C's fit_dataset
  step         one parml_trainer_step on a batch of 128 (Python: from numpy
               arrays, so each step copies the batch into new tensors;
               C: prebuilt tensors)
  step (bare)  Python only: parml._capi.parml_trainer_step on prebuilt tensors,
               in the same process as Trainer.step: the binding's own cost
               without the noise of comparing two processes

The C side is a small program written below, compiled with the system C
compiler against include/ and the library the package loaded.

usage: PYTHONPATH=bindings/python python3 bench/python_fit.py [--samples N] [--blocks B]
                                                           [--blas-threads T] [--json OUT] [--jsonl FILE]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
try:
    import parml
except ImportError:
    sys.path.insert(0, str(ROOT / "bindings" / "python"))
    import parml
from parml import _capi

DIMS = (784, 1024, 1024, 10)
BATCH = 128

C_SOURCE = r"""
#define _POSIX_C_SOURCE 200809L
#include <parml.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define CHECK(c) do { if ((c) != PARML_OK) { fprintf(stderr, "%s: %s\n", #c, parml_last_error()); exit(1); } } while (0)
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int32_t on_epoch(const parml_epoch_metrics *m, void *u) { (void)m; (void)u; return 0; }
int main(int argc, char **argv) {
    int64_t n = atoll(argv[1]); int reps = atoi(argv[2]); int steps = atoi(argv[3]); int threads = atoi(argv[5]);
    const int64_t dims[4] = {784, 1024, 1024, 10};
    float *x = malloc((size_t)n * 784 * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    FILE *f = fopen(argv[4], "rb");
    if (!f || fread(x, sizeof *x, (size_t)n * 784, f) != (size_t)n * 784) { fprintf(stderr, "data\n"); return 1; }
    fclose(f);
    for (int64_t i = 0; i < n; i++) y[i] = (float)(i % 10);
    parml_model model; CHECK(parml_model_create(&model));
    for (int l = 0; l < 3; l++) {
        CHECK(parml_model_add_linear(model, dims[l], dims[l + 1], 1));
        if (l < 2) CHECK(parml_model_add_activation(model, PARML_ACTIVATION_RELU));
    }
    CHECK(parml_model_init(model, 1));
    parml_optimizer_params opt; CHECK(parml_optimizer_params_init(&opt));
    opt.learning_rate = 0.01f; opt.momentum = 0.9f;
    parml_strategy_params st; CHECK(parml_strategy_params_init(&st));
    st.blas_threads = threads;
    parml_trainer tr; CHECK(parml_trainer_create(model, PARML_LOSS_CROSS_ENTROPY, &opt, &st, &tr));
    int64_t xs[2] = {n, 784}, ys[1] = {n}, bxs[2] = {128, 784}, bys[1] = {128};
    parml_tensor xt, yt, bx, by; parml_dataset ds;
    CHECK(parml_tensor_create(xs, 2, x, &xt)); CHECK(parml_tensor_create(ys, 1, y, &yt));
    CHECK(parml_dataset_create(xt, yt, &ds));
    CHECK(parml_tensor_create(bxs, 2, x, &bx)); CHECK(parml_tensor_create(bys, 1, y, &by));
    parml_fit_params fp; CHECK(parml_fit_params_init(&fp));
    fp.epochs = 1; fp.batch_size = 128; fp.shuffle = 0; fp.progress = on_epoch;
    CHECK(parml_trainer_fit(tr, ds, &fp, NULL)); /* warm-up */
    printf("{\"fit_dataset\": [");
    for (int r = 0; r < reps; r++) {
        double t0 = now(); CHECK(parml_trainer_fit(tr, ds, &fp, NULL));
        printf("%s%.6f", r ? ", " : "", now() - t0);
    }
    printf("], \"step\": [");
    float loss;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int s = 0; s < steps; s++) CHECK(parml_trainer_step(tr, bx, by, &loss));
        printf("%s%.6f", r ? ", " : "", (now() - t0) / steps);
    }
    printf("]}\n");
    return 0;
}
"""


def build_c(workdir: Path) -> Path:
    src = workdir / "python_fit_c.c"
    exe = workdir / "python_fit_c"
    src.write_text(C_SOURCE)
    # the directory of the library the package loaded (the build tree when it
    # was found by the system loader under its SONAME)
    loaded = Path(parml.library_path)
    libdir = str(loaded.resolve().parent if os.sep in parml.library_path else ROOT / ".build" / "release")
    cc = os.environ.get("CC", "cc")
    subprocess.run(
        [cc, "-std=c11", "-O2", f"-I{ROOT / 'include'}", str(src), f"-L{libdir}", "-l:libparml.so",
         f"-Wl,-rpath,{libdir}", "-o", str(exe)],
        check=True,
    )
    return exe


def python_block(x, y, ds, trainer, reps, steps, xt, yt):
    fit_ds, fit_arr, step, raw = [], [], [], []
    bx, by = x[:BATCH], y[:BATCH]
    loss = ctypes.c_float()
    for _ in range(reps):
        t0 = time.perf_counter()
        trainer.fit(ds, epochs=1, batch_size=BATCH, shuffle=False, verbose=False)
        fit_ds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        trainer.fit(x, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=False)
        fit_arr.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.step(bx, by)
        step.append((time.perf_counter() - t0) / steps)
        t0 = time.perf_counter()
        with trainer._use() as t:  # the bare binding: prebuilt tensors, no checks
            for _ in range(steps):
                _capi.parml_trainer_step(t, xt, yt, ctypes.byref(loss))
        raw.append((time.perf_counter() - t0) / steps)
    return fit_ds, fit_arr, step, raw


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=BATCH * 24)
    ap.add_argument("--blocks", type=int, default=4, help="alternating Python/C blocks")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per block")
    ap.add_argument("--steps", type=int, default=10, help="steps per step repetition")
    ap.add_argument("--blas-threads", type=int, default=0,
                    help="OpenBLAS threads on both sides (0 = the library's default, cores / ranks)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--jsonl", help="append python_fit_mlp_b128 as one JSON line to this file")
    args = ap.parse_args()

    rng = np.random.default_rng(7)
    x = (rng.random((args.samples, DIMS[0]), dtype=np.float32) - np.float32(0.5))
    y = (np.arange(args.samples) % 10).astype(np.int64)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        exe = build_c(tmp)
        data = tmp / "x.f32"
        x.tofile(data)
        model = parml.Sequential(
            [parml.Linear(784, 1024), parml.ReLU(), parml.Linear(1024, 1024), parml.ReLU(), parml.Linear(1024, 10)],
            seed=1,
        )
        trainer = parml.Trainer(
            model, optimizer=parml.SGD(0.01, momentum=0.9), strategy=parml.Strategy(blas_threads=args.blas_threads)
        )
        xt, yt = parml.Tensor(x[:BATCH]), parml.Tensor(y[:BATCH])
        ds = parml.Dataset(x, y)
        trainer.fit(ds, epochs=1, batch_size=BATCH, shuffle=False, verbose=False)  # warm-up
        py = {"fit_dataset": [], "fit_arrays": [], "step": [], "step_raw_capi": []}
        c = {"fit_dataset": [], "step": []}
        for _ in range(args.blocks):
            a, b, s, r = python_block(x, y, ds, trainer, args.reps, args.steps, xt._ptr, yt._ptr)
            py["fit_dataset"] += a
            py["fit_arrays"] += b
            py["step"] += s
            py["step_raw_capi"] += r
            out = subprocess.run(
                [str(exe), str(args.samples), str(args.reps), str(args.steps), str(data), str(args.blas_threads)],
                check=True, capture_output=True, text=True,
            )
            got = json.loads(out.stdout)
            c["fit_dataset"] += got["fit_dataset"]
            c["step"] += got["step"]
        ds.close()
        xt.close()
        yt.close()
        trainer.close()
        model.close()

    med = {f"python_{k}": statistics.median(v) for k, v in py.items()}
    med.update({f"c_{k}": statistics.median(v) for k, v in c.items()})
    rows = [
        ("fit, prebuilt Dataset (s/epoch)", med["python_fit_dataset"], med["c_fit_dataset"]),
        ("fit from numpy arrays (s/epoch)", med["python_fit_arrays"], med["c_fit_dataset"]),
        ("step from numpy arrays (ms/step)", med["python_step"] * 1e3, med["c_step"] * 1e3),
        ("step, bare _capi call (ms/step)", med["python_step_raw_capi"] * 1e3, med["c_step"] * 1e3),
    ]
    print(f"parml {parml.library_version()}, OpenBLAS {parml.blas_core()}, MLP {'-'.join(map(str, DIMS))}, "
          f"batch {BATCH}, {args.samples} samples/epoch, medians of {args.blocks * args.reps} alternating reps")
    print(f"{'case':36s} {'Python':>10s} {'C':>10s} {'Python/C':>9s}")
    for name, p, cv in rows:
        print(f"{name:36s} {p:10.4f} {cv:10.4f} {p / cv:9.3f}")
    print(f"Trainer.step over the bare binding, same process: {med['python_step'] / med['python_step_raw_capi']:.3f}")
    if args.jsonl:
        # One line for bench/results.json: samples/s of fit from Python
        # against the same fit driven from C (the python_fit_mlp_b128).
        rate = lambda seconds: args.samples / seconds  # noqa: E731
        line = {
            "name": "python_fit_mlp_b128", "value": round(rate(med["python_fit_dataset"]), 1), "unit": "samples/s",
            "baseline": "the same fit from a C host (same run, alternating)",
            "baseline_value": round(rate(med["c_fit_dataset"]), 1),
            "ratio": round(med["c_fit_dataset"] / med["python_fit_dataset"], 3),
        }
        with open(args.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    if args.json:
        result = {
            "case": {"dims": DIMS, "batch": BATCH, "samples": args.samples},
            "medians_seconds": med,
            "ratios": {
                "fit_dataset": med["python_fit_dataset"] / med["c_fit_dataset"],
                "fit_arrays": med["python_fit_arrays"] / med["c_fit_dataset"],
                "step": med["python_step"] / med["c_step"],
                "step_over_raw_capi_same_process": med["python_step"] / med["python_step_raw_capi"],
            },
            "raw": {"python": py, "c": c},
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
